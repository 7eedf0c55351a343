import { ErrorCodes, FerryError } from '../core/errors.js';

export async function runSendCommand(_argv: string[]): Promise<number> {
  throw new FerryError(ErrorCodes.USAGE, 'send: not implemented yet');
}
