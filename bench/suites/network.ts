/**
 * `network`: loopback transfers between two ends on this machine, cold cache,
 * against what people use today: rsync over ssh (reference), scp -r, tar piped
 * through ssh, and tar piped through netcat (plaintext, no authentication — the
 * speed ceiling of the Q&A seed). sshd is a throw-away instance on a loopback port
 * (test/support/sshd.ts). Both ends share the disk and the page cache, so the
 * harness's cache drop covers both.
 *
 * `network-noop` (same group) is the re-send of an up-to-date tree: ferry's
 * manifest/decision exchange against rsync's no-op over ssh.
 *
 * Peak RSS is measured per side: the sending side's processes (tar, ssh, rsync
 * client) and the receiving side's (the remote rsync via --rsync-path, the remote
 * tar, nc -l). scp's remote side is sftp-server under sshd: not measured (null).
 *
 * Tools are built by functions taking the ssh endpoint, so the wan suite reuses
 * them with the ssh port pointed at the delaying proxy; what every ssh-based tool
 * does around its command (RSS bookkeeping, the endpoint of the run) is `sshTool`.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Suite } from '../suite.js';
import { FERRY_BIN, Rss, ToolUnavailable, requireCommands, runProcess, runShell, sh, startProcess, waitListening, type RunContext, type Tool } from '../tools.js';
import { freePort, startSshd, type Sshd } from '../../test/support/sshd.js';
import { viaSshCipherArgs } from '../../src/modes/ssh-cipher.js';

/** Where ssh connects: the sshd itself, or a proxy in front of it. */
export interface SshEndpoint {
  host: string;
  /** Full ssh client options (port, key, no host-key checks). */
  sshArgs: string[];
  scpArgs: string[];
  /** `ssh` with sshArgs as one shell string: rsync's and ferry's -e, or the command of a pipe. */
  rsh: string;
}

export function endpointOf(sshd: Sshd, port = sshd.port): SshEndpoint {
  const swap = (args: string[], flag: string): string[] => {
    const out = [...args];
    const i = out.indexOf(flag);
    if (i >= 0) out[i + 1] = String(port);
    return out;
  };
  const sshArgs = swap(sshd.sshArgs, '-p');
  return { host: sshd.host, sshArgs, scpArgs: swap(sshd.scpArgs, '-P'), rsh: ['ssh', ...sshArgs].map(sh).join(' ') };
}

/** What one timed run of an ssh-based tool gets. */
interface SshRun {
  src: string;
  dst: string;
  ctx: RunContext;
  /** Peak-RSS bookkeeping for this run; its sides are reported. */
  rss: Rss;
  /** The endpoint as it is now (the wan suite's proxy port). */
  e: SshEndpoint;
}

/**
 * The set-up every ssh-based tool shares: `prepare` says whether it can run here; each
 * run gets its RSS bookkeeping and the endpoint, and reports the sides measured.
 * `remoteRss: false` for a remote side ssh starts out of our reach (scp's sftp-server).
 */
function sshTool(name: string, ep: () => SshEndpoint, prepare: () => void, transfer: (r: SshRun) => Promise<void>, opts: { remoteRss?: boolean } = {}): Tool {
  return {
    name,
    async prepare() {
      prepare();
    },
    async run(src, dst, ctx) {
      const rss = new Rss(ctx.scratch);
      await transfer({ src, dst, ctx, rss, e: ep() });
      return { rssKb: opts.remoteRss === false ? { ...rss.read(), recv: null } : rss.read() };
    },
  };
}

export function rsyncSshTool(ep: () => SshEndpoint, name = 'rsync -a (ssh)'): Tool {
  return sshTool(
    name,
    ep,
    () => requireCommands('rsync', 'ssh'),
    async ({ src, dst, ctx, rss, e }) => {
      const remoteRsync = [...rss.argv('recv'), 'rsync'].map(sh).join(' ');
      await runProcess([...rss.argv('send'), 'rsync', '-a', '-e', e.rsh, `--rsync-path=${remoteRsync}`, `${src}/`, `${e.host}:${dst}/`], {
        timeoutMs: ctx.timeoutMs,
        label: name,
      });
    },
  );
}

export function scpTool(ep: () => SshEndpoint, name = 'scp -r'): Tool {
  return sshTool(
    name,
    ep,
    () => requireCommands('scp', 'ssh'),
    async ({ src, dst, ctx, rss, e }) => {
      await runProcess([...rss.argv('send'), 'scp', '-r', '-q', ...e.scpArgs, src, `${e.host}:${dst}`], { timeoutMs: ctx.timeoutMs, label: name });
    },
    { remoteRss: false },
  );
}

export function tarSshTool(ep: () => SshEndpoint, name = 'tar | ssh tar'): Tool {
  return sshTool(
    name,
    ep,
    () => requireCommands('tar', 'ssh'),
    async ({ src, dst, ctx, rss, e }) => {
      const remote = `mkdir -p ${sh(dst)} && ${rss.prefix('recv')} tar xf - -C ${sh(dst)}`;
      const script = `${rss.prefix('send')} tar cf - -C ${sh(src)} . | ${rss.prefix('send')} ${e.rsh} ${sh(e.host)} ${sh(remote)}`;
      await runShell(script, { timeoutMs: ctx.timeoutMs, label: name });
    },
  );
}

/**
 * The timed body of every listener-then-sender tool: wait until the receiver
 * listens on `port` (or fail if it exits first), run the sender, then wait for the
 * receiver to finish; on any failure the receiver is killed before rethrowing.
 */
async function listenThenSend(recv: ReturnType<typeof startProcess>, port: number, send: () => Promise<void>): Promise<void> {
  try {
    await Promise.race([waitListening(port), recv.done.then(() => Promise.reject(new Error('receiver exited early')))]);
    await send();
    await recv.done;
  } catch (e) {
    recv.kill();
    await recv.done.catch(() => undefined);
    throw e;
  }
}

export function tarNcTool(name = 'tar | nc'): Tool {
  return {
    name,
    async prepare() {
      requireCommands('tar', 'nc');
    },
    async run(src, dst, ctx) {
      const rss = new Rss(ctx.scratch);
      const port = await freePort();
      const recv = startProcess(
        ['/bin/bash', '-c', `set -o pipefail; mkdir -p ${sh(dst)} && ${rss.prefix('recv')} nc -l -s 127.0.0.1 -p ${port} </dev/null | ${rss.prefix('recv')} tar xf - -C ${sh(dst)}`],
        { timeoutMs: ctx.timeoutMs, label: `${name} (receiver)` },
      );
      await listenThenSend(recv, port, () =>
        runShell(`${rss.prefix('send')} tar cf - -C ${sh(src)} . | ${rss.prefix('send')} nc -N 127.0.0.1 ${port}`, {
          timeoutMs: ctx.timeoutMs,
          label: `${name} (sender)`,
        }),
      );
      return { rssKb: rss.read() };
    },
  };
}

/**
 * The seed's C++ tool in its network mode, plaintext (its --tls needs a kTLS kernel,
 * which this machine lacks): its secret crosses the wire in clear, so it is a speed
 * peer, not a secure one. Built by ../shared/peers/build-uring-sync.sh.
 */
export function uringSyncNetTool(name = 'uring-sync (plain)'): Tool {
  return {
    name,
    async prepare() {
      requireCommands('uring-sync');
    },
    async run(src, dst, ctx) {
      const rss = new Rss(ctx.scratch);
      const port = await freePort();
      const secret = `bench-${port}`;
      const recv = startProcess([...rss.argv('recv'), 'uring-sync', 'recv', dst, '--listen', String(port), '--secret', secret], {
        timeoutMs: ctx.timeoutMs,
        label: `${name} (receiver)`,
      });
      await listenThenSend(recv, port, () =>
        runProcess([...rss.argv('send'), 'uring-sync', 'send', src, `127.0.0.1:${port}`, '--secret', secret], {
          timeoutMs: ctx.timeoutMs,
          label: `${name} (sender)`,
        }),
      );
      return { rssKb: rss.read() };
    },
  };
}

/**
 * ferry's scp-like mode (`ferry SRC host:DST`, `ferry host:SRC DST`): ssh starts the
 * remote ferry and hands it a key; the data takes ferry's own channel (or, with
 * `--via-ssh`, the ssh connection itself). The remote ferry runs under GNU time
 * through a wrapper script given as --remote-ferry, so its peak RSS is measured
 * like rsync's remote side. Skipped while this ferry has no ssh mode.
 *
 * With `viaProxy` (the wan suite) the data connection takes the same delaying link as
 * ssh: the remote listens on a port chosen here (FERRY_TEST_SSH_LISTEN_PORT, set by the
 * wrapper) behind a proxy, and the local side dials the proxy (FERRY_TEST_SSH_DIRECT).
 */
export function ferrySshTools(ep: () => SshEndpoint, opts: { viaProxy?: (targetPort: number) => Promise<number> } = {}): Tool[] {
  const hasSshMode = (): void => {
    const help = spawnSync(FERRY_BIN, ['--help'], { encoding: 'utf8' });
    if (!/--remote-ferry/.test(`${help.stdout ?? ''}${help.stderr ?? ''}`)) throw new ToolUnavailable('this ferry has no ssh mode (--remote-ferry)');
  };
  const tool = (name: string, pull: boolean, extra: string[]): Tool =>
    sshTool(
      name,
      ep,
      hasSshMode,
      async ({ src, dst, ctx, rss, e }) => {
        const remoteSide = pull ? 'send' : 'recv';
        const localSide = pull ? 'recv' : 'send';
        const wrapper = join(ctx.scratch, 'remote-ferry.sh');
        let listen = '';
        let env: NodeJS.ProcessEnv | undefined;
        if (opts.viaProxy && !extra.includes('--via-ssh')) {
          const port = await freePort();
          listen = `FERRY_TEST_SSH_LISTEN_PORT=${port} `;
          env = { ...process.env, FERRY_TEST_SSH_DIRECT: `127.0.0.1:${await opts.viaProxy(port)}` };
        }
        writeFileSync(wrapper, `#!/bin/sh\n${listen}exec ${rss.prefix(remoteSide)} ${sh(FERRY_BIN)} "$@"\n`, { mode: 0o755 });
        const operands = pull ? [`${e.host}:${src}/`, `${dst}/`] : [`${src}/`, `${e.host}:${dst}/`];
        await runProcess([...rss.argv(localSide), FERRY_BIN, '--progress=never', '-e', e.rsh, '--remote-ferry', wrapper, ...extra, ...operands], {
          timeoutMs: ctx.timeoutMs,
          label: name,
          ...(env ? { env } : {}),
        });
      },
    );
  return [tool('ferry push (ssh)', false, []), tool('ferry pull (ssh)', true, []), tool('ferry push --via-ssh', false, ['--via-ssh'])];
}

/**
 * The cipher ssh negotiates with this sshd under the user's ssh configuration, as
 * `ssh -v` reports it: every ssh-based tool here (rsync, scp, tar, ferry's ssh mode)
 * runs the same ssh with the same options, so they all pay for the same cipher —
 * except ferry's --via-ssh path, which moves aes128-gcm@openssh.com first when that
 * configuration chose no ciphers (modes/ssh-cipher.ts; `viaSshCipherNote`). Said once
 * per suite, since it moves the ssh rows a lot (OpenSSH's default chacha20-poly1305
 * costs noticeably more CPU per byte than aes128-gcm on CPUs with AES instructions).
 */
export function sshCipherOf(sshd: Sshd): string {
  const r = spawnSync('ssh', ['-v', '-o', 'LogLevel=DEBUG1', ...sshd.sshArgs, sshd.host, 'true'], { encoding: 'utf8', timeout: 15_000 });
  const m = /kex: client->server cipher: (\S+)/.exec(r.stderr ?? '');
  return m?.[1] ?? 'unknown';
}

/** What ferry --via-ssh asks ssh for against this sshd (modes/ssh-cipher.ts), for the suite's log. */
export async function viaSshCipherNote(sshd: Sshd): Promise<string> {
  const opts = await viaSshCipherArgs(['ssh', ...sshd.sshArgs], sshd.host);
  return opts.length === 0 ? 'the same' : `${opts[1]!.split(',')[0]!} first (ssh ${opts.join(' ')})`;
}

/** Start one sshd for a suite, stopped by the suite's cleanup. */
export async function suiteSshd(ctx: { onCleanup(fn: () => Promise<void>): void }): Promise<Sshd> {
  try {
    const sshd = await startSshd();
    ctx.onCleanup(() => sshd.stop());
    return sshd;
  } catch (e) {
    throw new ToolUnavailable(`cannot start sshd: ${(e as Error).message}`);
  }
}

// ─── ferry send/recv ────────────────────────────────────────────────────────────
// The Tool objects for ferry over the network: each run starts `ferry recv DST --listen
// 127.0.0.1:PORT` (under rss.argv('recv')), waits for it to listen, runs `ferry send SRC/
// 127.0.0.1:PORT` (under rss.argv('send')), awaits both and returns their peak RSS; the
// harness times it, verifies the tree and drops caches. network, network-noop and wan
// use them (wan connects through `viaProxy`'s port instead of PORT).
export function ferryNetworkTools(opts: { viaProxy?: (targetPort: number) => Promise<number> } = {}): Tool[] {
  const secret = `bench-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`;
  const tool = (name: string, extra: string[]): Tool => ({
    name,
    async prepare() {
      requireCommands('node');
    },
    async run(src, dst, ctx) {
      const rss = new Rss(ctx.scratch);
      const port = await freePort();
      const env = { ...process.env, FERRY_SECRET: secret };
      const recv = startProcess([...rss.argv('recv'), FERRY_BIN, 'recv', dst, '--listen', `127.0.0.1:${port}`, '--progress=never'], {
        timeoutMs: ctx.timeoutMs,
        label: `${name} (receiver)`,
        env,
      });
      await listenThenSend(recv, port, async () => {
        const target = opts.viaProxy ? await opts.viaProxy(port) : port;
        await runProcess([...rss.argv('send'), FERRY_BIN, 'send', `${src}/`, `127.0.0.1:${target}`, '--progress=never', ...extra], {
          timeoutMs: ctx.timeoutMs,
          label: `${name} (sender)`,
          env,
        });
      });
      return { rssKb: rss.read() };
    },
  });
  // Encrypted with the defaults (-P 1) is the figure that counts; -P 2 shows what a
  // second stream adds (or costs) here.
  return [tool('ferry send/recv', []), tool('ferry send/recv -P 2', ['-P', '2'])];
}
// ────────────────────────────────────────────────────────────────────────────────

export const networkSuite: Suite = {
  name: 'network',
  group: 'network',
  title: 'loopback network transfer, fresh destination, cold cache',
  references: ['rsync -a (ssh)', 'tar | nc', 'uring-sync (plain)'],
  destination: 'fresh',
  datasets: ({ quick }) => (quick ? ['ml_small', 'big_quick'] : ['ml_small', 'ml_large', 'ml_images', 'big']),
  async tools(ctx) {
    let sshd: Sshd | undefined;
    try {
      sshd = await suiteSshd(ctx);
    } catch (e) {
      ctx.log(`network: ${(e as Error).message}; ssh-based tools skipped`);
    }
    const ep = (): SshEndpoint => endpointOf(sshd!);
    if (sshd) {
      ctx.log(`network: ssh cipher for every ssh-based tool (the ssh configuration's choice): ${sshCipherOf(sshd)}; ferry --via-ssh: ${await viaSshCipherNote(sshd)}`);
    }
    const sshTools = sshd ? [...ferrySshTools(ep), rsyncSshTool(ep), scpTool(ep), tarSshTool(ep)] : [];
    return [...ferryNetworkTools(), ...sshTools, tarNcTool(), uringSyncNetTool()];
  },
};

export const networkNoopSuite: Suite = {
  name: 'network-noop',
  group: 'network',
  title: 'loopback re-send, destination already up to date, cold cache',
  references: ['rsync -a (ssh)'],
  destination: 'uptodate',
  datasets: ({ quick }) => (quick ? ['ml_small'] : ['ml_large']),
  async tools(ctx) {
    const sshd = await suiteSshd(ctx);
    return [...ferryNetworkTools(), rsyncSshTool(() => endpointOf(sshd))];
  },
};
