/**
 * The first bytes each side sends: a magic string and the protocol version.
 *
 *   hello = MAGIC (8 bytes: 0x89 "FERRY" CR LF) || version (u16, big-endian)
 *
 * The magic borrows PNG's trick: a high-bit first byte and a CR LF make a text-mode
 * mangling, a port pointed at the wrong service, or a non-ferry client obvious at
 * once. Both sides send their hello immediately and check the peer's byte by byte
 * (`checkHelloPrefix`), so a peer that is not ferry (an HTTP client, an ssh banner,
 * a TLS ClientHello) is recognised from its first byte without waiting for ten.
 *
 * Pure functions; the handshake (secure/handshake.ts) does the I/O and turns a
 * mismatch into FerryError(FERRY_E_VERSION) on both sides.
 */

export const MAGIC: Buffer = Buffer.from([0x89, 0x46, 0x45, 0x52, 0x52, 0x59, 0x0d, 0x0a]);
export const PROTOCOL_VERSION = 1;
export const HELLO_BYTES = MAGIC.length + 2;

export function encodeHello(version: number = PROTOCOL_VERSION): Buffer {
  const b = Buffer.allocUnsafe(HELLO_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt16BE(version, MAGIC.length);
  return b;
}

/** True while `bytes` (the first bytes received, possibly fewer than the magic) can still be a ferry hello. */
export function checkHelloPrefix(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, MAGIC.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== MAGIC[i]) return false;
  return true;
}

export type HelloResult =
  | { ok: true; version: number }
  | { ok: false; reason: 'not-ferry'; guess: string }
  | { ok: false; reason: 'version'; version: number };

/** Parse a complete hello (HELLO_BYTES bytes) against our version. */
export function parseHello(bytes: Uint8Array, ours: number = PROTOCOL_VERSION): HelloResult {
  if (bytes.length < HELLO_BYTES || !checkHelloPrefix(bytes)) {
    return { ok: false, reason: 'not-ferry', guess: guessProtocol(bytes) };
  }
  const version = (bytes[MAGIC.length]! << 8) | bytes[MAGIC.length + 1]!;
  if (version !== ours) return { ok: false, reason: 'version', version };
  return { ok: true, version };
}

/** A short description of what a non-ferry peer probably is, from its first bytes. */
export function guessProtocol(bytes: Uint8Array): string {
  const ascii = Buffer.from(bytes.subarray(0, 16)).toString('latin1');
  if (/^(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT) /.test(ascii) || ascii.startsWith('HTTP/')) return 'an HTTP peer';
  if (ascii.startsWith('SSH-')) return 'an ssh peer';
  if (bytes[0] === 0x16 && bytes[1] === 0x03) return 'a TLS peer';
  if (bytes.length > 0 && bytes[0] === MAGIC[0]) return 'a peer with a damaged ferry hello';
  return 'not a ferry peer';
}
