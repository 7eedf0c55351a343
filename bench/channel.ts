/**
 * Channel throughput over loopback TCP: userspace AES-128-GCM records, with the sender
 * and the receiver in one process or in two (a forked child receives). The record
 * layer is the data plane's unless FERRY_NATIVE=0 (node:crypto); the row says which.
 * (There is no unencrypted mode to compare with any more: bench/records.ts measures the
 * record layer beside a plain copy.)
 *
 *   node dist/bench/channel.js [--bytes N] [--runs N] [--processes 1|2] [--frame BYTES]
 *
 * Each run: handshake, then `bytes` of payload in `frame`-byte frames, timed from
 * the first send to the receiver seeing the authenticated end. MB/s is 10^6 bytes
 * per second of payload; CPU s/GB adds user+system time of both ends per 10^9
 * payload bytes. The table reports the median run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { nativeStatus } from '../src/native/index.js';
import { establishChannel, type SecureChannel } from '../src/secure/channel.js';

export type ChannelBenchMode = 'encrypted-userspace';

export interface ChannelBenchRow {
  mode: ChannelBenchMode;
  /** Which record layer ran: the data plane's ('native') or node:crypto ('js'). */
  records: 'native' | 'js';
  processes: 1 | 2;
  bytes: number;
  runs: number;
  /** Median throughput, 10^6 payload bytes per second. */
  mbPerS: number;
  /** Median CPU seconds (both ends, user+system) per 10^9 payload bytes. */
  cpuSecondsPerGB: number;
  /** Median handshake time, ms. */
  handshakeMs: number;
}

export interface ChannelBenchOptions {
  bytes: number;
  runs: number;
  processes?: 1 | 2;
  frameBytes?: number;
  modes?: ChannelBenchMode[];
}

const SECRET = 'bench-secret-not-secret';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function cpuSeconds(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1e6;
}

async function receive(ch: SecureChannel): Promise<number> {
  let n = 0;
  for await (const f of ch.frames()) n += f.payload.length;
  return n;
}

async function send(ch: SecureChannel, bytes: number, frameBytes: number): Promise<void> {
  const buf = Buffer.alloc(frameBytes, 0xab);
  for (let left = bytes; left > 0; left -= frameBytes) {
    await ch.send(0x10, left >= frameBytes ? buf : buf.subarray(0, left));
  }
  await ch.close();
}

async function listen(): Promise<{ port: number; next: () => Promise<Socket>; close: () => void }> {
  const srv = createServer();
  const waiting: ((s: Socket) => void)[] = [];
  const ready: Socket[] = [];
  srv.on('connection', (s) => {
    s.setNoDelay(true);
    const w = waiting.shift();
    if (w) w(s);
    else ready.push(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as { port: number }).port,
    next: () => new Promise<Socket>((r) => {
      const s = ready.shift();
      if (s) r(s);
      else waiting.push(r);
    }),
    close: () => srv.close(),
  };
}

async function dial(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.setNoDelay(true);
  await new Promise<void>((r, j) => {
    s.once('connect', () => r());
    s.once('error', j);
  });
  return s;
}

interface RunResult {
  seconds: number;
  cpu: number;
  handshakeMs: number;
}

async function runOnce1(mode: ChannelBenchMode, bytes: number, frameBytes: number): Promise<RunResult> {
  void mode;
  const l = await listen();
  const sock = await dial(l.port);
  const [c, s] = await Promise.all([
    establishChannel(sock, { role: 'client', secret: SECRET, ktls: 'off', peer: 'bench-server' }),
    l.next().then((ss) => establishChannel(ss, { role: 'server', secret: SECRET, ktls: 'off', peer: 'bench-client' })),
  ]);
  l.close();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const [n] = await Promise.all([receive(s), send(c, bytes, frameBytes)]);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(process.cpuUsage(cpu0));
  if (n !== bytes) throw new Error(`received ${n} of ${bytes} bytes`);
  await s.close();
  sock.destroy();
  return { seconds, cpu, handshakeMs: c.handshakeMs };
}

/** Two processes: this one sends, a forked child receives and reports its CPU time. */
async function runOnce2(child: ChildProcess, mode: ChannelBenchMode, bytes: number, frameBytes: number): Promise<RunResult> {
  void mode;
  const portMsg = await ask(child, { cmd: 'listen' });
  const sock = await dial(portMsg.port as number);
  const c = await establishChannel(sock, { role: 'client', secret: SECRET, ktls: 'off', peer: 'bench-receiver' });
  const done = ask(child, { cmd: 'receive' });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await send(c, bytes, frameBytes);
  const r = await done;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(process.cpuUsage(cpu0)) + (r.cpu as number);
  if (r.bytes !== bytes) throw new Error(`receiver got ${String(r.bytes)} of ${bytes} bytes`);
  sock.destroy();
  return { seconds, cpu, handshakeMs: c.handshakeMs };
}

function ask(child: ChildProcess, msg: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: Record<string, unknown>): void => {
      child.off('exit', onExit);
      if (typeof m.error === 'string') reject(new Error(m.error));
      else resolve(m);
    };
    const onExit = (): void => reject(new Error('bench receiver exited'));
    child.once('message', onMsg);
    child.once('exit', onExit);
    child.send(msg);
  });
}

/** Child side of the two-process bench. */
async function receiverMain(): Promise<void> {
  let pending: Promise<SecureChannel> | null = null;
  process.on('message', (m: { cmd: string }) => {
    void (async () => {
      try {
        if (m.cmd === 'listen') {
          const l = await listen();
          pending = l.next().then((s) => {
            l.close();
            return establishChannel(s, { role: 'server', secret: SECRET, ktls: 'off', peer: 'bench-sender' });
          });
          process.send!({ port: l.port });
        } else if (m.cmd === 'receive') {
          const ch = await pending!;
          const cpu0 = process.cpuUsage();
          const bytes = await receive(ch);
          const cpu = cpuSeconds(process.cpuUsage(cpu0));
          await ch.close();
          process.send!({ bytes, cpu });
        } else if (m.cmd === 'exit') {
          process.exit(0);
        }
      } catch (e) {
        process.send!({ error: String((e as Error)?.stack ?? e) });
      }
    })();
  });
}

export async function runChannelBench(opts: ChannelBenchOptions): Promise<ChannelBenchRow[]> {
  const processes = opts.processes ?? 2;
  const frameBytes = opts.frameBytes ?? 1024 * 1024;
  const modes = opts.modes ?? ['encrypted-userspace'];
  const child = processes === 2 ? fork(fileURLToPath(import.meta.url), ['--receiver'], { stdio: 'inherit' }) : null;
  const rows: ChannelBenchRow[] = [];
  try {
    for (const mode of modes) {
      const results: RunResult[] = [];
      // one warm-up run, not counted
      for (let i = 0; i <= opts.runs; i++) {
        const bytes = i === 0 ? Math.min(opts.bytes, 64 * 1024 * 1024) : opts.bytes;
        const r = child ? await runOnce2(child, mode, bytes, frameBytes) : await runOnce1(mode, bytes, frameBytes);
        if (i > 0) results.push(r);
      }
      rows.push({
        mode,
        records: nativeStatus().records,
        processes,
        bytes: opts.bytes,
        runs: opts.runs,
        mbPerS: Math.round(median(results.map((r) => opts.bytes / r.seconds / 1e6))),
        cpuSecondsPerGB: Math.round(median(results.map((r) => r.cpu / (opts.bytes / 1e9))) * 100) / 100,
        handshakeMs: Math.round(median(results.map((r) => r.handshakeMs)) * 10) / 10,
      });
    }
  } finally {
    if (child) {
      child.send({ cmd: 'exit' });
      await new Promise((r) => child.once('exit', r));
    }
  }
  return rows;
}

/** Handshakes per second over loopback (both ends in this process), returned as ms per handshake. */
export async function runHandshakeBench(count: number): Promise<{ msPerHandshake: number; cpuMsPerHandshake: number }> {
  const l = await listen();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const sock = await dial(l.port);
    const [c, s] = await Promise.all([
      establishChannel(sock, { role: 'client', secret: SECRET, ktls: 'off', peer: 's' }),
      l.next().then((ss) => establishChannel(ss, { role: 'server', secret: SECRET, ktls: 'off', peer: 'c' })),
    ]);
    c.destroy();
    s.destroy();
  }
  const ms = (performance.now() - t0) / count;
  const cpuMs = cpuSeconds(process.cpuUsage(cpu0)) * 1000 / count;
  l.close();
  return { msPerHandshake: Math.round(ms * 100) / 100, cpuMsPerHandshake: Math.round(cpuMs * 100) / 100 };
}

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  if (process.argv.includes('--receiver')) {
    void receiverMain();
  } else {
    const bytes = arg('--bytes', 1024 * 1024 * 1024);
    const runs = arg('--runs', 3);
    const processes = arg('--processes', 2) === 1 ? 1 : 2;
    const frameBytes = arg('--frame', 1024 * 1024);
    void (async () => {
      const rows = await runChannelBench({ bytes, runs, processes, frameBytes });
      console.table(rows);
      const hs = await runHandshakeBench(arg('--handshakes', 50));
      console.log(`handshake (both ends in one process, loopback TCP): ${hs.msPerHandshake} ms wall, ${hs.cpuMsPerHandshake} ms CPU (both ends) per handshake`);
    })();
  }
}
