/**
 * The whole secure channel and the CLI with kTLS, run INSIDE the kernel lab (see
 * test/lab/ktls-interop.lab.ts for the record-level interop; this file checks that
 * the channel really hands its TX direction to the kernel and that a peer with
 * userspace RX reads it). Skips unless FERRY_IN_LAB=1; never picked up by the host
 * suite (the name ends in .lab.ts).
 *
 * - establishChannel with ktls 'on' on both ends: info.tx is 'ktls', frames of all
 *   sizes arrive intact both ways, and the authenticated end works;
 * - one end kTLS, the other userspace (either may offload independently);
 * - the channel's refusal to pass its rekey limit under kTLS is a clean FERRY_E_KTLS;
 * - `ferry recv` / `ferry send --ktls=on` copy a small tree and report tx "ktls".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isFerryError } from '../../src/core/errors.js';
import { cliEntry } from '../support/cli-entry.js';
import { establishChannel, type ChannelOptions, type SecureChannel } from '../../src/secure/channel.js';

const inLab = process.env.FERRY_IN_LAB === '1';
const skip = inLab ? false : 'runs only inside the kernel lab (FERRY_IN_LAB=1, see scripts/kernel-lab.sh)';
const T = { skip, timeout: 240_000 };
const root = fileURLToPath(new URL('../../../', import.meta.url));

async function tcpPair(): Promise<{ client: Socket; server: Socket; close: () => void }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const client = await new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const server = await accepted;
  srv.close();
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
    },
  };
}

type Side = Partial<Omit<ChannelOptions, 'role' | 'secret'>>;

async function channels(client: Side, server: Side): Promise<{ c: SecureChannel; s: SecureChannel; close: () => void }> {
  const p = await tcpPair();
  const secret = 'lab secret: correct horse battery staple';
  const [c, s] = await Promise.all([
    establishChannel(p.client, { role: 'client', secret, peer: 'server', ...client }),
    establishChannel(p.server, { role: 'server', secret, peer: 'client', ...server }),
  ]);
  return { c, s, close: p.close };
}

async function collect(ch: SecureChannel): Promise<{ type: number; payload: Buffer }[]> {
  const out: { type: number; payload: Buffer }[] = [];
  for await (const f of ch.frames()) out.push({ type: f.type, payload: Buffer.from(f.payload) });
  return out;
}

/** Frames both ways, including one larger than a record batch and many small ones. */
async function exchange(c: SecureChannel, s: SecureChannel): Promise<void> {
  const big = randomBytes(512 * 1024 + 13); // small: AES runs emulated under TCG
  const small = Array.from({ length: 200 }, (_, i) => Buffer.from(`frame ${i} `.repeat(i % 7)));
  const got = collect(s);
  const back = collect(c);
  await c.send(0x10, Buffer.from('hello'));
  await c.send(0x11, big);
  for (const f of small) await c.send(0x12, f);
  await c.close();
  const reply = randomBytes(50_000);
  await s.send(0x20, reply);
  await s.close();
  const frames = await got;
  assert.equal(frames.length, 2 + small.length);
  assert.deepEqual(frames[0], { type: 0x10, payload: Buffer.from('hello') });
  assert.ok(frames[1]!.payload.equals(big), 'big frame differs');
  small.forEach((f, i) => assert.ok(frames[2 + i]!.payload.equals(f), `small frame ${i} differs`));
  const replies = await back;
  assert.equal(replies.length, 1);
  assert.ok(replies[0]!.payload.equals(reply), 'reply differs');
}

test('establishChannel with ktls on at both ends: the kernel encrypts both directions', T, async () => {
  const { c, s, close } = await channels({ ktls: 'on' }, { ktls: 'on' });
  try {
    assert.equal(c.info.tx, 'ktls', c.ktlsReason);
    assert.equal(s.info.tx, 'ktls', s.ktlsReason);
    await exchange(c, s);
  } finally {
    close();
  }
});

test('kTLS on one end only: the userspace end interoperates in both directions', T, async () => {
  for (const [client, server] of [[{ ktls: 'on' }, { ktls: 'off' }], [{ ktls: 'off' }, { ktls: 'auto' }]] as const) {
    const { c, s, close } = await channels(client, server);
    try {
      assert.equal(c.info.tx, client.ktls === 'off' ? 'userspace' : 'ktls');
      assert.equal(s.info.tx, server.ktls === 'off' ? 'userspace' : 'ktls');
      await exchange(c, s);
    } finally {
      close();
    }
  }
});

test('a kTLS TX channel stops cleanly at its rekey limit (the kernel cannot rekey here)', T, async () => {
  const { c, s, close } = await channels({ ktls: 'on', rekeyAfterRecords: 8 }, { ktls: 'off' });
  try {
    assert.equal(c.info.tx, 'ktls');
    void collect(s).catch(() => {});
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 20; i++) await c.send(0x10, randomBytes(40_000));
      })(),
      (e: unknown) => isFerryError(e, 'FERRY_E_KTLS') && /cannot rekey/.test(e.message),
    );
  } finally {
    close();
  }
});

/** Runs the CLI; `kill()` ends it (a receiver whose sender failed would wait for another). */
function runFerry(
  args: string[],
  onLine?: (line: string) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> & { kill(): void } {
  let child!: ChildProcess;
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const c = spawn(process.execPath, [cliEntry(root), ...args], {
      env: { ...process.env, FERRY_SECRET: 'lab secret: a long random one would be better' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    let stdout = '';
    let stderr = '';
    let partial = ''; // a line may arrive in pieces
    c.stdout.on('data', (d: Buffer) => {
      const s = d.toString();
      stdout += s;
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      if (onLine) for (const l of lines) if (l !== '') onLine(l);
    });
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.once('error', reject);
    c.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return Object.assign(done, { kill: () => void child.kill('SIGKILL') });
}

test('ferry send/recv --ktls=on copies a tree with the kernel encrypting', T, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-ktls-lab-'));
  try {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    const big = randomBytes(256 * 1024 + 5);
    writeFileSync(join(src, 'big.bin'), big);
    writeFileSync(join(src, 'sub', 'small.txt'), 'small file\n');
    const dst = join(dir, 'dst');

    let onListening!: (port: number) => void;
    const listening = new Promise<number>((r) => (onListening = r));
    const recv = runFerry(['recv', dst, '--listen', '127.0.0.1:0', '--ktls=on', '--json'], (line) => {
      const m = /"event":"listening".*"port":(\d+)/.exec(line);
      if (m) onListening(Number(m[1]));
    });
    const port = await Promise.race([listening, recv.then((r) => Promise.reject(new Error(`recv exited early: ${r.stderr}`)))]);
    const send = await runFerry(['send', `${src}/`, `127.0.0.1:${port}`, '--ktls=on', '--json']);
    if (send.code !== 0) recv.kill(); // fail now, not when the lab's time runs out
    const r = await recv;
    assert.equal(send.code, 0, send.stderr);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(send.stdout.trim().split('\n').pop()!) as { tx: string; rx: string; committed: number };
    assert.equal(summary.tx, 'ktls');
    assert.equal(summary.committed, 2);
    const recvSummary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tx: string; rx: string; committed: number };
    // --ktls hands each side's sending to the kernel; what it receives it opens itself.
    assert.deepEqual([recvSummary.tx, recvSummary.rx, recvSummary.committed], ['ktls', 'userspace', 2]);
    assert.equal(summary.rx, 'userspace');
    assert.ok(readFileSync(join(dst, 'big.bin')).equals(big));
    assert.equal(readFileSync(join(dst, 'sub', 'small.txt'), 'utf8'), 'small file\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
