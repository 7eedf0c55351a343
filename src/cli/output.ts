/**
 * The only place ferry writes to the terminal. Errors and progress go to stderr,
 * the `--json` summary or the `--stats` block (never both) to stdout, so
 * `ferry ... --json | jq` works.
 */
import { cleanForDisplay } from '../core/errors.js';

export function printError(line: string): void {
  process.stderr.write(`ferry: ${cleanForDisplay(line)}\n`);
}

export function printWarning(line: string): void {
  process.stderr.write(`ferry: warning: ${cleanForDisplay(line)}\n`);
}

export function printInfo(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

/** Colour only on a TTY and when NO_COLOR is unset (https://no-color.org). */
export function useColor(stream: NodeJS.WriteStream = process.stderr): boolean {
  return stream.isTTY === true && !process.env['NO_COLOR'];
}

/** Plain text on stdout (`--stats`, rsync's place for it). */
export function printOut(text: string): void {
  process.stdout.write(text);
}
