/**
 * Keys for one direction of a channel, in the shape both the userspace record layer
 * (secure/record-layer.ts) and the kernel (secure/ktls.ts, struct
 * tls12_crypto_info_aes_gcm_128 with version TLS 1.3) consume, so that either side
 * can offload independently and the bytes on the wire are the same.
 *
 * RFC 8446 §5.3: the per-record nonce is `iv XOR (0^32 || seq_be64)`. The kernel
 * wants the first 4 bytes of `iv` as `salt`, the last 8 as `iv`, and `seq` as
 * `rec_seq` (big-endian).
 */
export interface TrafficSecret {
  /** AES-128-GCM key, 16 bytes. */
  key: Buffer;
  /** Static IV, 12 bytes. */
  iv: Buffer;
  /** Sequence number of the next record in this direction. */
  seq: bigint;
}
