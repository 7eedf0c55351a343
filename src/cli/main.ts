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
 */
import { ErrorCodes, ExitCodes, FerryError, exitCodeFor } from '../core/errors.js';
import { printError } from './output.js';
import { versionText } from './version.js';
import { HELP } from './help.js';
import { parseOperand } from './operands.js';

type Command = (argv: string[]) => Promise<number>;

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
const TAKES_VALUE = new Set(['-e', '--rsh', '--remote-ferry', '--exclude', '-P', '--parallel', '-c', '--chunk-size', '-j', '--jobs', '-q', '--queue-depth', '--progress', '--ktls', '--connect-timeout', '--secret', '--secret-file']);
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
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    process.stdout.write(HELP);
    return first === undefined ? ExitCodes.USAGE : ExitCodes.OK;
  }
  if (first === '--version' || first === 'version') {
    process.stdout.write(versionText(argv.includes('-v') || argv.includes('--verbose')));
    return ExitCodes.OK;
  }
  if (first === '--server') return (await import('./ssh-command.js')).runServerCommand(argv.slice(1));
  const ssh = async (rest: string[]): Promise<number> => (await import('./ssh-command.js')).runSshCommand(rest);
  if (first === 'copy' && wantsSsh(argv.slice(1))) return ssh(argv.slice(1));
  const named = commands[first];
  if (named) return (await named())(argv.slice(1));

  // uring-sync's form: `ferry [options] SRC DST` is a local copy when no operand is
  // remote, and the scp-like mode when one is (rsync's rule, cli/operands.ts).
  if (wantsSsh(argv)) return ssh(argv);
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
