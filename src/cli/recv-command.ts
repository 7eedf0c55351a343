import { ErrorCodes, FerryError } from '../core/errors.js';

export async function runRecvCommand(_argv: string[]): Promise<number> {
  throw new FerryError(ErrorCodes.USAGE, 'recv: not implemented yet');
}
