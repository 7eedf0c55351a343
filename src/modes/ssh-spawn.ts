/**
 * Starting ssh for the scp-like mode, kept apart from modes/ssh.ts so that it loads in
 * a few milliseconds: the CLI starts ssh (`prespawnSsh`) before it loads the rest of
 * ferry, so that ssh's connection, authentication and the remote ferry's start-up run
 * while this side loads its modules, instead of after.
 *
 * The command is fixed by three things only: the rsh command (`-e/--rsh`, FERRY_RSH,
 * or `ssh`), ssh's destination, and the remote ferry's path (with --via-ssh, also the
 * cipher list of ssh-cipher.ts, which both starts ask for and get alike). modes/ssh.ts asks for the
 * child with the exact argv it would spawn (`takeSsh`): a prespawned child with another
 * argv (the early look at the command line guessed wrong) is killed and a new one
 * started, so the early start can only save time, never change what runs. A prespawned
 * child that nobody takes (a usage error found later) is killed when the process exits.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { ErrorCodes, FerryError } from '../core/errors.js';

/** Quote one word for a POSIX shell (the remote ferry path is the only word we send). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Split an `-e/--rsh` command like rsync: words, with '…' and "…" quoting. */
export function splitCommand(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let q: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === q) q = null;
      else if (c === '\\' && q === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      q = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (q) throw new FerryError(ErrorCodes.USAGE, `--rsh: unbalanced quote in ${JSON.stringify(s)}`);
  if (inWord) out.push(cur);
  if (out.length === 0) throw new FerryError(ErrorCodes.USAGE, '--rsh: empty command');
  return out;
}

/** The argv that runs the remote ferry's server half over ssh; `sshOptions` go before the destination (ssh-cipher.ts). */
export function sshArgv(rsh: readonly string[], destination: string, remoteFerry: string, sshOptions: readonly string[] = []): string[] {
  return [...rsh, ...sshOptions, destination, `${shellQuote(remoteFerry)} --server`];
}

let early: { argv: string[]; child: ChildProcessWithoutNullStreams; failed: boolean } | null = null;

function start(argv: readonly string[]): ChildProcessWithoutNullStreams {
  return spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Start ssh now, for `takeSsh` to pick up (at most one; errors are left for the real start to report). */
export function prespawnSsh(argv: readonly string[]): ChildProcessWithoutNullStreams | undefined {
  if (early !== null) return undefined;
  let child: ChildProcessWithoutNullStreams;
  try {
    child = start(argv);
  } catch {
    return undefined;
  }
  const e = { argv: [...argv], child, failed: false };
  // A failed start is not reused: the real start fails the same way and reports it.
  child.on('error', () => (e.failed = true));
  early = e;
  process.once('exit', () => {
    if (early?.child === child) child.kill();
  });
  return child;
}

let pending: Promise<void> | null = null;

/**
 * Prespawn with an argv that takes a moment to know (--via-ssh asks ssh for its cipher
 * list first: ssh-cipher.ts); `earlyStartSettled` lets the taker wait for it, so that a
 * late early start never leaves a second child behind.
 */
export function prespawnSshLater(argv: Promise<readonly string[]>): void {
  pending = argv.then(
    (a) => void prespawnSsh(a),
    () => undefined,
  );
}

/** Resolves once an early start asked for with prespawnSshLater has happened (or failed). */
export function earlyStartSettled(): Promise<void> {
  return pending ?? Promise.resolve();
}

/**
 * Kill a prespawned child nobody took (the command failed before starting the ssh mode,
 * e.g. a usage error): its pipes would otherwise keep this process alive.
 */
export function dropPrespawnedSsh(): void {
  const e = early;
  early = null;
  e?.child.kill();
}

/** The child running exactly `argv`: the prespawned one when it matches, else a new one. */
export function takeSsh(argv: readonly string[]): ChildProcessWithoutNullStreams {
  const e = early;
  early = null;
  if (e !== null) {
    if (e.argv.length === argv.length && e.argv.every((a, i) => a === argv[i]) && !e.failed && e.child.exitCode === null && e.child.signalCode === null) return e.child;
    e.child.kill();
  }
  return start(argv);
}
