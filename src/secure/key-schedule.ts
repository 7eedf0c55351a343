/**
 * Key schedule: from CPace's ISK and the handshake transcript to per-direction
 * traffic keys, finished (key-confirmation) keys and a session binding value.
 *
 * Built from TLS 1.3's primitives so that every step has a published test vector:
 * HKDF-SHA256 (RFC 5869, via node:crypto) and HKDF-Expand-Label / Derive-Secret
 * exactly as RFC 8446 §7.1 defines them (label prefix "tls13 "), checked against
 * RFC 8448 §3 in test/secure-record-layer.test.ts. The traffic key and IV come out
 * of a traffic secret the same way TLS derives them (§7.3), and a key update
 * derives the next secret with the label "traffic upd" (§7.2), so a kTLS socket
 * and our userspace record layer agree on every key.
 *
 *   prk        = HKDF-Extract(salt = "ferry/1 cpace", IKM = ISK)
 *                (the ssh mode's PSK handshake: salt = "ferry/1 psk", IKM = the 32-byte key)
 *   th         = SHA-256(client hello || ClientShare || server hello || ServerShare)
 *                (PSK: ClientNonce and ServerNonce in place of the shares)
 *   s_finished = Expand-Label(prk, "ferry s finished", th, 32)
 *   c_finished = Expand-Label(prk, "ferry c finished", th, 32)
 *   c_ap / s_ap = Expand-Label(prk, "ferry c ap" / "ferry s ap", th, 32)
 *   binding    = Expand-Label(prk, "ferry binding", th, 32)
 *   key, iv    = Expand-Label(ap, "key", "", 16), Expand-Label(ap, "iv", "", 12)
 *
 * ISK already binds the secret, sid and both CPace messages; hashing the whole
 * transcript (hellos and negotiated mode included) into every output makes any
 * tampering with the plaintext handshake show up as a failed key confirmation.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { TrafficSecret } from './traffic-secret.js';

export const HASH_BYTES = 32;
export const KEY_BYTES = 16;
export const IV_BYTES = 12;

/** HKDF-Extract (RFC 5869 §2.2) with SHA-256. */
export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt.length === 0 ? Buffer.alloc(HASH_BYTES) : salt).update(ikm).digest();
}

/** HKDF-Expand (RFC 5869 §2.3) with SHA-256; `prk` is already pseudorandom. */
export function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  // node's hkdfSync always extracts first; for Expand alone, run the T(i) chain directly.
  const out = Buffer.allocUnsafe(length);
  let t: Buffer = Buffer.alloc(0);
  let off = 0;
  for (let i = 1; off < length; i++) {
    t = createHmac('sha256', prk).update(t).update(info).update(Buffer.from([i])).digest();
    off += t.copy(out, off);
  }
  return out;
}

/** HKDF-Expand-Label(Secret, Label, Context, Length) (RFC 8446 §7.1). */
export function hkdfExpandLabel(secret: Uint8Array, label: string, context: Uint8Array, length: number): Buffer {
  const fullLabel = Buffer.from(`tls13 ${label}`, 'latin1');
  if (fullLabel.length > 255 || context.length > 255) throw new RangeError('label or context too long');
  const info = Buffer.allocUnsafe(2 + 1 + fullLabel.length + 1 + context.length);
  info.writeUInt16BE(length, 0);
  info[2] = fullLabel.length;
  fullLabel.copy(info, 3);
  info[3 + fullLabel.length] = context.length;
  Buffer.from(context.buffer, context.byteOffset, context.byteLength).copy(info, 4 + fullLabel.length);
  return hkdfExpand(secret, info, length);
}

/** Derive-Secret(Secret, Label, Messages) (RFC 8446 §7.1), messages given as their hash. */
export function deriveSecret(secret: Uint8Array, label: string, transcriptHash: Uint8Array): Buffer {
  return hkdfExpandLabel(secret, label, transcriptHash, HASH_BYTES);
}

/** Key and IV for one direction from its traffic secret (RFC 8446 §7.3), starting at `seq`. */
export function trafficKeys(secret: Uint8Array, seq: bigint = 0n): TrafficSecret {
  return {
    key: hkdfExpandLabel(secret, 'key', Buffer.alloc(0), KEY_BYTES),
    iv: hkdfExpandLabel(secret, 'iv', Buffer.alloc(0), IV_BYTES),
    seq,
  };
}

/** application_traffic_secret_N+1 (RFC 8446 §7.2). */
export function nextTrafficSecret(secret: Uint8Array): Buffer {
  return hkdfExpandLabel(secret, 'traffic upd', Buffer.alloc(0), HASH_BYTES);
}

export interface SessionSecrets {
  /** Client→server application traffic secret (32 bytes). */
  clientTraffic: Buffer;
  /** Server→client application traffic secret (32 bytes). */
  serverTraffic: Buffer;
  clientFinishedKey: Buffer;
  serverFinishedKey: Buffer;
  /** Same on both sides, unpredictable, unique per session: binds parallel connections. */
  binding: Buffer;
}

const SALTS = { cpace: Buffer.from('ferry/1 cpace'), psk: Buffer.from('ferry/1 psk') } as const;

/** `ikm` is CPace's ISK, or the ssh mode's key for `psk`: the two never share a prk. */
export function deriveSessionSecrets(ikm: Uint8Array, transcriptHash: Uint8Array, kind: keyof typeof SALTS = 'cpace'): SessionSecrets {
  const prk = hkdfExtract(SALTS[kind], ikm);
  return {
    clientTraffic: deriveSecret(prk, 'ferry c ap', transcriptHash),
    serverTraffic: deriveSecret(prk, 'ferry s ap', transcriptHash),
    clientFinishedKey: deriveSecret(prk, 'ferry c finished', transcriptHash),
    serverFinishedKey: deriveSecret(prk, 'ferry s finished', transcriptHash),
    binding: deriveSecret(prk, 'ferry binding', transcriptHash),
  };
}

/** Finished MAC (RFC 8446 §4.4.4 shape): HMAC-SHA256(finished_key, transcript hash). */
export function finishedMac(finishedKey: Uint8Array, transcriptHash: Uint8Array): Buffer {
  return createHmac('sha256', finishedKey).update(transcriptHash).digest();
}

/** Constant-time comparison of two MACs of possibly different lengths. */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}
