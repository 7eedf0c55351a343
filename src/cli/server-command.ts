/**
 * `ferry --server`: the remote half of the scp-like mode (modes/server.ts), started by
 * ssh with this fixed argv. Kept apart from cli/ssh-command.ts so that the remote loads
 * only what serving needs: its start-up is on the user's clock.
 */
import { ErrorCodes, ExitCodes, FerryError, exitCodeFor } from '../core/errors.js';
import { reportedToPeer, runServer, stdioOfProcess } from '../modes/server.js';
import { printError, printWarning } from './output.js';
import { VERSION } from './version.js';

/** `ferry --server`: run by ssh on the remote side; its argv carries nothing else. */
export async function runServerCommand(argv: string[]): Promise<number> {
  if (argv.length !== 0) throw new FerryError(ErrorCodes.USAGE, '--server takes no arguments (it is started by ferry over ssh)');
  const io = stdioOfProcess();
  let code: number = ExitCodes.OK;
  try {
    const out = await runServer(io, {
      version: VERSION,
      sshConnection: process.env['SSH_CONNECTION'],
      listenPort: process.env['FERRY_TEST_SSH_LISTEN_PORT'] ? Number(process.env['FERRY_TEST_SSH_LISTEN_PORT']) : undefined,
      onProblem: (e) => printError(e.toLine()),
      onWarning: (e) => printWarning(e.toLine()),
    });
    if (out.stream) {
      code = ExitCodes.OK;
    } else if (out.recv?.error) {
      printError(out.recv.error.toLine());
      code = exitCodeFor(out.recv.error.code);
    } else if ((out.recv?.result?.summary.failed ?? 0) > 0) {
      for (const f of out.recv!.result!.failures) printError(f.toLine());
      code = ExitCodes.PARTIAL;
    } else if (out.send && Math.max(out.send.failures.length, out.send.summary.failed) > 0) {
      code = ExitCodes.PARTIAL;
    }
  } catch (e) {
    const err = e instanceof FerryError ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
    if (!reportedToPeer.has(err)) printError(err.toLine());
    code = exitCodeFor(err.code);
  }
  // Flush what we said on stdout (a bootstrap error reply, the end of the channel),
  // then leave: stdin may still be open (the lifeline) and listeners may linger.
  await new Promise<void>((r) => {
    io.output.once('error', () => r());
    io.output.end(() => r());
    setTimeout(r, 2000).unref();
  });
  await new Promise<void>((r) => process.stderr.write('', () => r()));
  process.exit(code);
}
