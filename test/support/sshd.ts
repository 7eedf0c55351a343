/**
 * A throw-away OpenSSH server on a free loopback port, for tests and benchmarks.
 *
 * Everything lives in a fresh temp directory: a new host key, a new client key,
 * an authorized_keys naming only that client key, and a config that listens on
 * 127.0.0.1 only. `sshd -D -e` keeps it in the foreground (so stop() is a kill of
 * a child we own) with its log on stderr (kept, bounded, for error messages).
 * StrictModes/UsePAM are off because the temp dir and a container root do not
 * satisfy them; nothing here is reachable from outside the machine.
 *
 * The returned `sshArgs` are the client options that go with it (`ssh
 * ...sshArgs host cmd`); `scpArgs` is the same with scp's capital -P;
 * `sshCommand` is one string for `rsync -e`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool } from './tools.js';

export interface Sshd {
  port: number;
  host: '127.0.0.1';
  /** Options for ssh: -p, -i, no host-key checks, batch mode, quiet. */
  sshArgs: string[];
  /** The same for scp (-P instead of -p). */
  scpArgs: string[];
  /** `ssh <sshArgs>` as one shell-quoted string, for `rsync -e`. */
  sshCommand: string;
  /** The temp directory holding keys and config (removed by stop()). */
  dir: string;
  stop(): Promise<void>;
}

export interface StartSshdOptions {
  /** Extra sshd_config lines. */
  extraConfig?: string[];
  /** Give up when sshd does not accept connections within this time. Default 10 s. */
  timeoutMs?: number;
}

/** Pick a port the kernel says is free right now (small race until sshd binds it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startSshd(options: StartSshdOptions = {}): Promise<Sshd> {
  const sshd = findTool('sshd');
  const keygen = findTool('ssh-keygen');
  if (sshd === undefined || keygen === undefined) throw new Error('startSshd: sshd or ssh-keygen is not installed');
  // sshd insists on its privilege-separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const dir = mkdtempSync(join(tmpdir(), 'ferry-sshd-'));
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  for (const k of [hostKey, clientKey]) {
    const r = spawnSync(keygen, ['-q', '-t', 'ed25519', '-N', '', '-C', 'ferry-test', '-f', k], { encoding: 'utf8' });
    if (r.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`startSshd: ssh-keygen failed: ${r.stderr.trim()}`);
    }
  }
  const authorized = join(dir, 'authorized_keys');
  writeFileSync(authorized, readFileSync(`${clientKey}.pub`), { mode: 0o600 });

  const port = await freePort();
  const sftp = ['/usr/lib/openssh/sftp-server', '/usr/libexec/sftp-server', '/usr/lib/ssh/sftp-server'].find((p) => existsSync(p));
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorized}`,
    'StrictModes no',
    'UsePAM no',
    'PermitRootLogin yes',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'MaxStartups 100',
    'MaxSessions 100',
    'LogLevel ERROR',
    ...(sftp !== undefined ? [`Subsystem sftp ${sftp}`] : []),
    ...(options.extraConfig ?? []),
  ];
  const configFile = join(dir, 'sshd_config');
  writeFileSync(configFile, `${config.join('\n')}\n`);

  const child = spawn(sshd, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (b: Buffer) => {
    log = (log + b.toString()).slice(-4000);
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });

  const stop = async (): Promise<void> => {
    await killChild(child);
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    if (exited) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`startSshd: sshd exited at startup: ${log.trim()}`);
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`startSshd: sshd did not listen on 127.0.0.1:${port}: ${log.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const common = [
    '-i', clientKey,
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'LogLevel=ERROR',
    '-o', 'IdentitiesOnly=yes',
  ];
  const sshArgs = ['-p', String(port), ...common];
  return {
    port,
    host: '127.0.0.1',
    sshArgs,
    scpArgs: ['-P', String(port), ...common],
    sshCommand: ['ssh', ...sshArgs].map(shellQuote).join(' '),
    dir,
    stop,
  };
}

/** Quote one word for /bin/sh. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
