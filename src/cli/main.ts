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

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  copy: async () => (await import('./copy-command.js')).runCopyCommand,
  send: async () => (await import('./send-command.js')).runSendCommand,
  recv: async () => (await import('./recv-command.js')).runRecvCommand,
};

/** An operand names a remote side when a ':' comes before any '/' (scp's rule). */
export function isRemoteOperand(s: string): boolean {
  const colon = s.indexOf(':');
  if (colon <= 0) return false;
  const slash = s.indexOf('/');
  return slash === -1 || colon < slash;
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
  const named = commands[first];
  if (named) return (await named())(argv.slice(1));

  // uring-sync's form: `ferry [options] SRC DST` is a local copy when no operand is remote.
  const operands = argv.filter((a) => !a.startsWith('-'));
  if (operands.some(isRemoteOperand)) {
    throw new FerryError(
      ErrorCodes.USAGE,
      'remote operands (user@host:path) are not supported yet; use `ferry send`/`ferry recv`',
    );
  }
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
