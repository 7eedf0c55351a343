import { ErrorCodes, FerryError } from '../core/errors.js';

export async function runCopyCommand(_argv: string[]): Promise<number> {
  throw new FerryError(ErrorCodes.USAGE, 'copy: not implemented yet');
}
