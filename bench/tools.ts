/**
 * What a benchmarked tool is, and the process plumbing every tool shares.
 *
 * A Tool is one small object: `name`, optional `prepare` (once per dataset,
 * untimed: start a daemon, check a binary — throw ToolUnavailable to skip the tool
 * with a reason), `run(src, dst, ctx)` (the timed part: copy the tree `src` to
 * the path `dst`, which does not exist yet for fresh-destination suites) and
 * optional `cleanup`. The harness removes the destination, syncs and drops the
 * page cache before, and adds a `sync` of the destination filesystem after, so a
 * tool does not have to.
 *
 * Peak memory is measured by running every process under GNU time
 * (`/usr/bin/time -f %M -o FILE`), which reports the child's max RSS in KiB. A
 * run reports it per side (`local`, or `send`/`recv` for network tools); in a
 * shell pipeline each element gets its own wrapper (see `Rss`) and a side's
 * figure is the largest of its processes.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RunResult {
  /** Peak RSS in KiB per side, null when it could not be measured. */
  rssKb: Record<string, number | null>;
}

export interface RunContext {
  /** Kill the tool and fail the run after this long. */
  timeoutMs: number;
  /** A scratch directory for this run (removed by the harness). */
  scratch: string;
}

export interface SuiteContext {
  quick: boolean;
  full: boolean;
  /** Where destinations live (same filesystem as the datasets). */
  workDir: string;
  /** Register something to undo when the suite ends (stop sshd, close a proxy). */
  onCleanup(fn: () => Promise<void> | void): void;
  log(line: string): void;
}

export interface Tool {
  name: string;
  prepare?(ctx: SuiteContext): Promise<void>;
  run(src: string, dst: string, ctx: RunContext): Promise<RunResult>;
  cleanup?(): Promise<void>;
}

/** Thrown by prepare() when a tool cannot run here; the harness skips it and prints why. */
export class ToolUnavailable extends Error {}

/** The repository root (dist/bench/ → ../../). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FERRY_BIN = join(REPO_ROOT, 'bin', 'ferry');
const GNU_TIME = '/usr/bin/time';

export function haveGnuTime(): boolean {
  return existsSync(GNU_TIME);
}

/** Is `name` on $PATH (or in sbin)? */
export function which(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (d === '') continue;
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export function requireCommands(...names: string[]): void {
  const missing = names.filter((n) => which(n) === undefined);
  if (missing.length > 0) throw new ToolUnavailable(`not installed: ${missing.join(', ')}`);
}

/** Quote one word for /bin/sh. */
export function sh(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Peak-RSS bookkeeping for one run: `prefix(side)` gives a `/usr/bin/time ... `
 * word list (as a shell string) to put before a command; `read()` collects them.
 */
export class Rss {
  #files: { side: string; file: string }[] = [];
  #n = 0;
  constructor(readonly scratch: string) {}

  /** Shell words to prepend to a command ('' when GNU time is missing). */
  prefix(side: string): string {
    return this.argv(side).map(sh).join(' ');
  }

  /** The same as an argv prefix, for spawn(). */
  argv(side: string): string[] {
    if (!haveGnuTime()) {
      this.#files.push({ side, file: '' });
      return [];
    }
    const file = join(this.scratch, `rss-${side}-${this.#n++}`);
    this.#files.push({ side, file });
    return [GNU_TIME, '-f', '%M', '-o', file];
  }

  read(): Record<string, number | null> {
    const out: Record<string, number | null> = {};
    for (const { side, file } of this.#files) {
      let kb: number | null = null;
      if (file !== '' && existsSync(file)) {
        // GNU time may put "Command exited with non-zero status N" first.
        const last = readFileSync(file, 'utf8').trim().split('\n').pop() ?? '';
        const n = Number.parseInt(last, 10);
        kb = Number.isFinite(n) ? n : null;
      }
      const prev = out[side];
      out[side] = kb === null ? (prev ?? null) : Math.max(prev ?? 0, kb);
    }
    return out;
  }
}

/** Process groups started by startProcess and still running (killed on Ctrl-C). */
const live = new Set<number>();

/** SIGKILL every process group this harness started that is still running. */
export function killAllProcesses(): void {
  for (const pgid of live) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

export interface Proc {
  done: Promise<void>;
  kill(): void;
}

/**
 * Start a command in its own process group; `done` rejects with the tail of its
 * stderr when it exits non-zero or outlives `timeoutMs`.
 */
export function startProcess(argv: string[], opts: { timeoutMs: number; label: string; env?: NodeJS.ProcessEnv }): Proc {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('startProcess: empty argv');
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: opts.env ?? process.env });
  const pgid = child.pid;
  if (pgid !== undefined) live.add(pgid);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-2000);
  });
  let timedOut = false;
  const kill = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, opts.timeoutMs);
  const done = new Promise<void>((resolvePromise, reject) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${opts.label}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (pgid !== undefined) live.delete(pgid);
      if (timedOut) reject(new TimeoutError(`${opts.label}: timed out after ${(opts.timeoutMs / 1000).toFixed(0)} s`));
      else if (code === 0) resolvePromise();
      else {
        const tail = stderr.trim().split('\n').slice(-3).join(' / ');
        reject(new Error(`${opts.label}: exit ${code ?? signal}${tail ? `: ${tail}` : ''}`));
      }
    });
  });
  return { done, kill };
}

export class TimeoutError extends Error {}

/** Run a command to completion (see startProcess). */
export async function runProcess(argv: string[], opts: { timeoutMs: number; label: string; env?: NodeJS.ProcessEnv }): Promise<void> {
  await startProcess(argv, opts).done;
}

/** Run a bash script to completion; a pipeline fails when any element fails (pipefail). */
export async function runShell(script: string, opts: { timeoutMs: number; label: string }): Promise<void> {
  await runProcess(['/bin/bash', '-c', `set -o pipefail; ${script}`], opts);
}

/** `sync -f PATH`: flush the filesystem holding PATH (falls back to a global sync). */
export async function syncFs(path: string): Promise<void> {
  const target = existsSync(path) ? path : dirname(path);
  try {
    await runProcess(['sync', '-f', target], { timeoutMs: 600_000, label: 'sync' });
  } catch {
    await runProcess(['sync'], { timeoutMs: 600_000, label: 'sync' });
  }
}

/** Flush dirty pages and drop the page cache; false when not permitted. */
export async function dropCaches(): Promise<boolean> {
  await runProcess(['sync'], { timeoutMs: 600_000, label: 'sync' });
  if (process.getuid?.() !== 0) return false;
  try {
    const { writeFile } = await import('node:fs/promises');
    await writeFile('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/** Wait until something listens on 127.0.0.1:port (or any address), per /proc/net/tcp. */
export async function waitListening(port: number, timeoutMs = 10_000): Promise<void> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
      const text = await readFile(f, 'utf8').catch(() => '');
      for (const line of text.split('\n')) {
        const cols = line.trim().split(/\s+/);
        if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') return;
      }
    }
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function makeScratch(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A tool that is one measured command line: `argv(src, dst)` is run under GNU time. */
export function commandTool(name: string, needs: string[], argv: (src: string, dst: string) => string[], side = 'local'): Tool {
  return {
    name,
    async prepare() {
      requireCommands(...needs);
    },
    async run(src, dst, ctx) {
      const rss = new Rss(ctx.scratch);
      await runProcess([...rss.argv(side), ...argv(src, dst)], { timeoutMs: ctx.timeoutMs, label: name });
      return { rssKb: rss.read() };
    },
  };
}

/**
 * CPU seconds the whole machine has spent so far (every core: user, nice, system,
 * irq, softirq; not idle, iowait or steal), from /proc/stat. The difference over a
 * run is what both ends of a loopback transfer cost together, kernel work included
 * (sshd, TCP, page cache). null where /proc/stat is not readable.
 */
export function machineCpuSeconds(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = f;
    return (user + nice + system + irq + softirq) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
/** USER_HZ: 100 on every Linux architecture ferry runs on. */
const CLOCK_TICKS = 100;
