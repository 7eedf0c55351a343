/**
 * Entry point: picks the command and turns every outcome into an exit code.
 *
 * Command forms (README "Usage"):
 *   ferry copy [options] SRC DST            local tree copy
 *   ferry [options] SRC DST                 the same, uring-sync's form (no host: operand)
 *   ferry recv DST --listen [ADDR:]PORT     receive over the network
 *   ferry send SRC HOST:PORT                send over the network
 *
 * Each command module parses its own options and returns an exit code. This file
 * is the only place that catches a FerryError for good: it prints its one line and
 * maps its code to the documented exit status.
 *
 * `-h`/`--help` and `-V`/`--version` are answered here, for every command and before
 * its options are parsed, so they work whatever else is on the line (`ferry send -V`,
 * `ferry copy --bogus --help`); `ferry help CMD` is `ferry CMD --help`. A first word
 * that is neither a command nor an existing path, and has no `/` or `:` (so it cannot
 * be an operand of uring-sync's `ferry SRC DST` form), is an unknown command.
 */
import { lstatSync } from 'node:fs';
import { ErrorCodes, ExitCodes, FerryError, exitCodeFor } from '../core/errors.js';
import { printError } from './output.js';
import { parseOperand, sshDestination } from './operands.js';
import { RSYNC_VALUE_OPTIONS } from './rsync-help.js';

type Command = (argv: string[]) => Promise<number>;

/** Each command's --help text, loaded only when asked for. */
const helps: Record<'ferry' | 'copy' | 'send' | 'recv' | 'ssh', () => Promise<string>> = {
  ferry: async () => (await import('./help.js')).HELP,
  copy: async () => (await import('./help.js')).COPY_HELP,
  send: async () => (await import('./send-command.js')).SEND_HELP,
  recv: async () => (await import('./recv-command.js')).RECV_HELP,
  ssh: async () => (await import('./ssh-command.js')).SSH_HELP,
};

const commands: Record<string, () => Promise<Command>> = {
  copy: async () => (await import('./copy-command.js')).runCopyCommand,
  send: async () => (await import('./send-command.js')).runSendCommand,
  recv: async () => (await import('./recv-command.js')).runRecvCommand,
};

export { isRemoteOperand } from './operands.js';

/**
 * Operands of a copy command line (the words that are not options or their values), to
 * decide between a local copy and the ssh mode. Values of options that take one are
 * skipped, so `-e 'ssh -p 22'` or `--exclude a:b` is not mistaken for an operand.
 */
const TAKES_VALUE = new Set([...RSYNC_VALUE_OPTIONS, '-e', '--rsh', '--remote-ferry', '--exclude', '-P', '--parallel', '-c', '--chunk-size', '-j', '--jobs', '-q', '--queue-depth', '--progress', '--ktls', '--connect-timeout', '--secret', '--secret-file']);
function operandsOf(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-') out.push(a);
    else if (a.startsWith('-')) {
      if (TAKES_VALUE.has(a) && a !== '--progress') i++;
    } else out.push(a);
  }
  return out;
}

/**
 * Whether `argv` asks for help or the version: a `-h`/`--help`/`-V`/`--version` word
 * before `--` that is not the value of an option (see TAKES_VALUE).
 */
function askedFor(argv: string[]): 'help' | 'version' | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '-h' || a === '--help') return 'help';
    if (a === '-V' || a === '--version') return 'version';
    if (TAKES_VALUE.has(a) && a !== '--progress') i++;
  }
  return undefined;
}

async function versionText(verbose: boolean): Promise<string> {
  return (await import('./version.js')).versionText(verbose);
}

function isVerbose(argv: string[]): boolean {
  return argv.includes('-v') || argv.includes('--verbose');
}

/** A word that cannot be read as a command, an option or an operand of `ferry SRC DST`. */
function isUnknownCommand(word: string): boolean {
  if (word.startsWith('-') || word.includes('/') || word.includes(':')) return false;
  try {
    lstatSync(word);
    return false;
  } catch {
    return true;
  }
}

/**
 * Start ssh before loading the rest of ferry (modes/ssh-spawn.ts), when the command line
 * says unambiguously what ssh will run: one remote host, and -e/--rsh, --remote-ferry
 * given (if at all) as separate words. modes/ssh.ts uses the child only if it runs exactly
 * the argv it would have started; otherwise it is killed. Anything unusual: no early start.
 */
function startSshEarly(argv: string[], { prespawnSsh, prespawnSshLater, splitCommand, sshArgv }: typeof import('../modes/ssh-spawn.js')): void {
  if (argv.some((a) => a === '-h' || a === '--help' || /^-e./.test(a) || a.startsWith('--rsh=') || a.startsWith('--remote-ferry='))) return;
  const value = (...names: string[]): string | undefined => {
    let v: string | undefined;
    for (let i = 0; i + 1 < argv.length; i++) if (names.includes(argv[i]!)) v = argv[i + 1];
    return v;
  };
  try {
    const remotes = operandsOf(argv)
      .filter((a) => a !== '-')
      .map(parseOperand)
      .filter((o) => o.kind === 'remote');
    const dests = new Set(remotes.map((o) => sshDestination(o)));
    if (dests.size !== 1) return;
    const rsh = splitCommand(value('-e', '--rsh') ?? process.env['FERRY_RSH'] ?? 'ssh');
    const dest = [...dests][0]!;
    const ferry = value('--remote-ferry') ?? 'ferry';
    if (!argv.includes('--via-ssh')) {
      prespawnSsh(sshArgv(rsh, dest, ferry));
      return;
    }
    // --via-ssh: ssh's cipher may depend on its configuration (modes/ssh-cipher.ts); ask first.
    prespawnSshLater(
      import('../modes/ssh-cipher.js')
        .then(({ viaSshCipherArgs }) => viaSshCipherArgs(rsh, dest))
        .then((opts) => sshArgv(rsh, dest, ferry, opts)),
    );
  } catch {
    /* the ssh command reports it */
  }
}

function wantsSsh(argv: string[]): boolean {
  return operandsOf(argv).some((a) => a !== '-' && isRemote(a));
}

function isRemote(a: string): boolean {
  try {
    return parseOperand(a).kind === 'remote';
  } catch {
    return true; // let the ssh command report why it cannot be used
  }
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  // First: the remote half of the ssh mode loads nothing it does not need.
  if (first === '--server') return (await import('./server-command.js')).runServerCommand(argv.slice(1));
  if (first === undefined) {
    process.stdout.write(await helps.ferry());
    return ExitCodes.USAGE;
  }
  if (first === 'help') {
    const topic = argv[1] === undefined ? 'ferry' : argv[1];
    if (!(topic in helps)) throw new FerryError(ErrorCodes.USAGE, `help: no command '${topic}' (commands: copy, send, recv, ssh)`);
    process.stdout.write(await helps[topic as keyof typeof helps]());
    return ExitCodes.OK;
  }
  if (first === 'version') {
    process.stdout.write(await versionText(isVerbose(argv)));
    return ExitCodes.OK;
  }
  const named = commands[first];
  const rest = named ? argv.slice(1) : argv;
  const ssh = (first === 'copy' || !named) && wantsSsh(rest);
  const asked = askedFor(rest);
  if (asked === 'version') {
    process.stdout.write(await versionText(isVerbose(rest)));
    return ExitCodes.OK;
  }
  if (asked === 'help') {
    const topic = ssh ? 'ssh' : named ? (first as 'copy' | 'send' | 'recv') : rest.length === 1 ? 'ferry' : 'copy';
    process.stdout.write(await helps[topic]());
    return ExitCodes.OK;
  }
  if (ssh) {
    // Imported here, not at the top: `ferry --server` and the other commands never start ssh.
    const spawner = await import('../modes/ssh-spawn.js');
    startSshEarly(rest, spawner);
    try {
      return await (await import('./ssh-command.js')).runSshCommand(rest);
    } finally {
      spawner.dropPrespawnedSsh(); // unused when the command stopped early (a usage error)
    }
  }
  if (named) return (await named())(rest);
  if (isUnknownCommand(first)) {
    throw new FerryError(ErrorCodes.USAGE, `unknown command '${first}' (and no file or directory of that name); commands: copy, send, recv; see 'ferry --help'`);
  }

  // uring-sync's form: `ferry [options] SRC DST` is a local copy (the scp-like mode
  // when an operand is remote, above; rsync's rule, cli/operands.ts).
  return (await (await commands.copy!())(argv));
}

/**
 * Ctrl-C / SIGTERM: say so and exit 130. Nothing is lost: every file in flight is
 * still under its temporary name, and the next run removes or resumes it.
 */
function exitOnSignal(signal: NodeJS.Signals): void {
  printError(`${ErrorCodes.INTERRUPTED}: interrupted by ${signal}; temporary files are cleaned up or resumed by the next run`);
  process.exit(ExitCodes.INTERRUPTED);
}

async function run(): Promise<void> {
  process.once('SIGINT', exitOnSignal);
  process.once('SIGTERM', exitOnSignal);
  let code: number;
  try {
    code = await main(process.argv.slice(2));
  } catch (e) {
    if (e instanceof FerryError) {
      printError(e.toLine());
      code = exitCodeFor(e.code);
    } else {
      printError(`${ErrorCodes.INTERNAL}: ${(e as Error)?.stack ?? String(e)}`);
      code = ExitCodes.PARTIAL;
    }
  }
  process.exitCode = code;
}

// Run only when executed directly (the bin launcher), not when imported by tests.
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  void run();
}
