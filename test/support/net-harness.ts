/**
 * Helpers for end-to-end network tests: start a real `ferry recv` (the CLI, as a
 * child process), learn its port from the `listening on ADDR:PORT` line, run a real
 * `ferry send` against it, and collect both exit codes and outputs; and the options of
 * an in-process send() (`sendOptions`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { SendOptions } from '../../src/modes/send.js';
import { FERRY_MAIN, type RunResult } from './tree.js';

/** An in-process send() of the contents of `src` to 127.0.0.1:`port`: one stream, no kTLS, 64 KiB chunks; `extra` on top. */
export function sendOptions(src: string, port: number, secret: string, extra: Partial<SendOptions> = {}): SendOptions {
  return {
    src: `${src}/`,
    host: '127.0.0.1',
    port,
    secret,
    ktls: 'off',
    streams: 1,
    chunkSize: 64 * 1024,
    checksum: false,
    delete: false,
    dryRun: false,
    excludes: [],
    preserveSpecial: false,
    ...extra,
  };
}

export const TEST_SECRET = 'correct-horse-battery-staple-42';

export interface Child {
  child: ChildProcess;
  done: Promise<RunResult>;
  stderr(): string;
  stdout(): string;
}

export function spawnFerry(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Child {
  const child = spawn(process.execPath, [FERRY_MAIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', FERRY_SECRET: TEST_SECRET, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done, stderr: () => stderr, stdout: () => stdout };
}

export interface Receiver extends Child {
  port: number;
}

/** Start `ferry recv DST --listen 127.0.0.1:0 ...` and wait until it listens. */
export async function startRecv(dst: string, extra: string[] = [], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Receiver> {
  const c = spawnFerry(['recv', dst, '--listen', '127.0.0.1:0', '--progress=never', ...extra], env, timeoutMs);
  const port = await new Promise<number>((resolve, reject) => {
    const check = (): void => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(c.stderr());
      if (m) {
        c.child.stderr!.off('data', check);
        resolve(Number(m[1]));
      }
    };
    c.child.stderr!.on('data', check);
    void c.done.then((r) => reject(new Error(`recv exited before listening: ${r.code} ${r.stderr}`)));
  });
  return { ...c, port };
}

export function sendTo(src: string, port: number, extra: string[] = [], env: Record<string, string> = {}, timeoutMs = 60_000): Child {
  return spawnFerry(['send', src, `127.0.0.1:${port}`, '--progress=never', ...extra], env, timeoutMs);
}

/** Run recv + send to completion. */
export async function transfer(
  src: string,
  dst: string,
  sendArgs: string[] = [],
  recvArgs: string[] = [],
): Promise<{ send: RunResult; recv: RunResult }> {
  const r = await startRecv(dst, recvArgs);
  const s = sendTo(src, r.port, sendArgs);
  const [send, recv] = await Promise.all([s.done, r.done]);
  return { send, recv };
}

/** The last JSON object line of a stdout. */
export function lastJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  return JSON.parse(lines[lines.length - 1] ?? '{}') as Record<string, unknown>;
}
