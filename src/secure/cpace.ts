/**
 * CPace over ristretto255 with SHA-512 (CPACE-RISTR255-SHA512), following
 * draft-irtf-cfrg-cpace-21 (§3 notation, §4-§5 protocol, §7.1 generator string,
 * §7.3 group abstractions; test vectors in Appendix B.3, checked in
 * test/secure-cpace.test.ts).
 *
 * Why CPace: both sides hold the same low-entropy secret and want a strong key
 * without ever sending the secret or anything from which it could be tested
 * offline. CPace hashes (secret, channel id, session id) to a secret *generator*
 * and then runs plain Diffie-Hellman on it. A passive eavesdropper sees two random
 * group elements; an active attacker who guesses the secret wrong learns only that
 * the one guess it committed to in this session was wrong (one online guess per
 * session). With fresh scalars per session, past sessions stay secret even if the
 * secret later leaks (forward secrecy). ristretto255 is a prime-order group, so no
 * cofactor clearing or small-subgroup checks beyond rejecting the identity.
 *
 * The group arithmetic is @noble/curves (audited); this file only implements the
 * draft's byte-string functions around it. `RistrettoPoint.hashToCurve` is the
 * draft's "one_way_map" from 64 uniform bytes (RFC 9496 §4.3.4 element
 * derivation); noble marks it deprecated in favour of its RFC 9380 hasher, which
 * adds expand_message_xmd on top and so is *not* what CPace specifies.
 */
import { createHash, randomBytes } from 'node:crypto';
import { RistrettoPoint } from '@noble/curves/ed25519';

export const DSI = Buffer.from('CPaceRistretto255');
export const DSI_ISK = Buffer.from('CPaceRistretto255_ISK');
/** SHA-512 input block size (H.s_in_bytes). */
export const S_IN_BYTES = 128;
/** Encoded group element size. */
export const ELEMENT_BYTES = 32;
const GROUP_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;

/** LEB128 length prefix || data (draft §3.3 prepend_len). */
export function prependLen(data: Uint8Array): Buffer {
  const len: number[] = [];
  let n = data.length;
  for (;;) {
    if (n < 128) {
      len.push(n);
      break;
    }
    len.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  return Buffer.concat([Buffer.from(len), data]);
}

/** prefix_free_cat(a0, a1, ...) (draft §3.3), called lv_cat in the test vectors. */
export function lvCat(...parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts.map(prependLen));
}

/** generator_string(DSI, PRS, CI, sid, s_in_bytes) (draft §7.1). */
export function generatorString(dsi: Uint8Array, prs: Uint8Array, ci: Uint8Array, sid: Uint8Array, sInBytes = S_IN_BYTES): Buffer {
  const lenZpad = Math.max(0, sInBytes - prependLen(prs).length - prependLen(dsi).length - 1);
  return lvCat(dsi, prs, Buffer.alloc(lenZpad), ci, sid);
}

/** G.calculate_generator(H, PRS, CI, sid) for ristretto255 (draft §7.3). */
export function calculateGenerator(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): InstanceType<typeof RistrettoPoint> {
  const hash = createHash('sha512').update(generatorString(DSI, prs, ci, sid)).digest();
  return RistrettoPoint.hashToCurve(hash);
}

/** Little-endian bytes to a scalar. */
export function scalarFromLE(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}

/** G.sample_scalar(): 32 random bytes, bits above 252 cleared, little-endian (draft §7.3). */
export function sampleScalar(): bigint {
  for (;;) {
    const b = randomBytes(32);
    b[31] = b[31]! & 0x0f;
    const s = scalarFromLE(b);
    if (s !== 0n && s < GROUP_ORDER) return s;
  }
}

/** G.scalar_mult(y, g): encode(g^y). */
export function scalarMult(y: bigint, g: InstanceType<typeof RistrettoPoint>): Buffer {
  return Buffer.from(g.multiply(y).toBytes());
}

/**
 * G.scalar_mult_vfy(y, X): decode X, return encode(X^y); null stands for G.I
 * (X does not decode, or the result is the identity). Callers MUST abort on null.
 */
export function scalarMultVfy(y: bigint, X: Uint8Array): Buffer | null {
  if (X.length !== ELEMENT_BYTES) return null;
  let P: InstanceType<typeof RistrettoPoint>;
  try {
    P = RistrettoPoint.fromBytes(X);
  } catch {
    return null;
  }
  const K = P.multiply(y);
  if (K.is0()) return null;
  return Buffer.from(K.toBytes());
}

/**
 * Parse MSG = prefix_free_cat(Y, AD) strictly (draft §5.3: the decoded lengths must
 * add up to the message length exactly). Returns null on any malformation.
 */
export function parseMessage(msg: Uint8Array): { Y: Buffer; AD: Buffer } | null {
  const fields: Buffer[] = [];
  let off = 0;
  for (let f = 0; f < 2; f++) {
    let len = 0;
    let shift = 1;
    for (let i = 0; ; i++) {
      if (off >= msg.length || i >= 3) return null; // lengths here are tiny: 3 LEB128 bytes is plenty
      const b = msg[off++]!;
      len += (b & 0x7f) * shift;
      shift *= 128;
      if ((b & 0x80) === 0) break;
    }
    if (off + len > msg.length) return null;
    fields.push(Buffer.from(msg.subarray(off, off + len)));
    off += len;
  }
  if (off !== msg.length) return null;
  return { Y: fields[0]!, AD: fields[1]! };
}

/** ISK = H.hash(prefix_free_cat(DSI || "_ISK", sid, K) || MSGa || MSGb), initiator-responder order (draft §5.3). */
export function deriveIsk(sid: Uint8Array, K: Uint8Array, msgA: Uint8Array, msgB: Uint8Array): Buffer {
  return createHash('sha512').update(lvCat(DSI_ISK, sid, K)).update(msgA).update(msgB).digest();
}

/** One side's state: its scalar and its message. `finish` consumes the peer's message. */
export interface CPaceParty {
  /** Our message: prefix_free_cat(Y, AD). */
  readonly msg: Buffer;
  /** Derive ISK from the peer's message; null if it is malformed or yields the identity (abort). */
  finish(peerMsg: Uint8Array): { isk: Buffer; peerAD: Buffer } | null;
}

/**
 * Start CPace as initiator (role 'a') or responder ('b'). `scalar` is injectable
 * only for the known-answer tests; production always samples a fresh one.
 */
export function startCPace(
  role: 'a' | 'b',
  prs: Uint8Array,
  ci: Uint8Array,
  sid: Uint8Array,
  ad: Uint8Array,
  scalar: bigint = sampleScalar(),
): CPaceParty {
  const g = calculateGenerator(prs, ci, sid);
  const Y = scalarMult(scalar, g);
  const msg = lvCat(Y, ad);
  return {
    msg,
    finish(peerMsg) {
      const parsed = parseMessage(peerMsg);
      if (parsed === null) return null;
      const K = scalarMultVfy(scalar, parsed.Y);
      if (K === null) return null;
      const isk = role === 'a' ? deriveIsk(sid, K, msg, peerMsg) : deriveIsk(sid, K, peerMsg, msg);
      return { isk, peerAD: parsed.AD };
    },
  };
}
