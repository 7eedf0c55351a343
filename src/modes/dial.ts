/**
 * Dialling the receiver or the ssh mode's remote: a TCP connection with a deadline and
 * Nagle off, its failures as FERRY_E_CONNECT naming the address. Apart from
 * modes/send.ts so that a side that only receives (an ssh pull) need not load the sender.
 */
import net from 'node:net';
import { ErrorCodes, FerryError } from '../core/errors.js';

export function connectTcp(host: string, port: number, timeoutMs = 15_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new FerryError(ErrorCodes.CONNECT, `${host}:${port}: connection timed out`, { subject: `${host}:${port}` }));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.setNoDelay(true);
      resolve(sock);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new FerryError(ErrorCodes.CONNECT, `${host}:${port}: cannot connect: ${e.code ?? e.message}`, { subject: `${host}:${port}`, cause: e }));
    });
  });
}
