/**
 * kTLS offload: hand one direction of an established channel to the Linux kernel's
 * TLS record layer, so that plain socket writes (or reads) carry TLS 1.3 records
 * encrypted (decrypted) by the kernel, with no per-record crypto in JavaScript.
 *
 * Why it is safe to mix: ferry's record layer (secure/record-layer.ts) produces
 * exactly the records the kernel does — RFC 8446 §5.2 TLSCiphertext with opaque_type
 * application_data (23), legacy_record_version 0x0303, TLSInnerPlaintext = content ||
 * 0x17 with no padding, AES-128-GCM with nonce = iv XOR seq (§5.3) and the 5-byte
 * header as additional data. So each side may offload TX, RX, both or neither,
 * independently of the peer; the kernel lab (scripts/kernel-lab.sh,
 * test/lab/ktls-interop.lab.ts) checks this byte for byte.
 *
 * How: Node cannot call setsockopt, so the native addon (native/ktls.c, built at
 * install by scripts/build-native.mjs, optional, loaded by native/index.ts) makes the two calls of
 * Documentation/networking/tls.rst:
 *   setsockopt(fd, SOL_TCP, TCP_ULP, "tls")                   once per socket
 *   setsockopt(fd, SOL_TLS, TLS_TX or TLS_RX, &crypto_info)   once per direction
 * where crypto_info is struct tls12_crypto_info_aes_gcm_128 (include/uapi/linux/tls.h)
 * with info.version = TLS_1_3_VERSION (0x0304), cipher_type = TLS_CIPHER_AES_GCM_128
 * (51), salt = iv[0..4], iv = iv[4..12], rec_seq = seq as 8 bytes big-endian, key.
 * The kernel then computes the RFC 8446 nonce as salt || (iv XOR rec_seq) — the same
 * value as the 12-byte iv XOR the 64-bit seq. The fd comes from the undocumented
 * `socket._handle.fd`, checked before use.
 *
 * Rules for the caller (the secure channel):
 * - TX: enable only when nothing we wrote is still queued in Node/libuv (checked
 *   here: `writableLength` and the handle's `writeQueueSize` must be 0); every later
 *   write of ≤ 16 KiB that the kernel takes in one sendmsg becomes one record, larger
 *   ones are cut at 2^14 like RecordSealer cuts them. The kernel never sends
 *   close_notify; the channel's own authenticated end frame is what counts.
 * - RX: enable only when userspace has read nothing past the handshake: the peer's
 *   first encrypted records must still be in the kernel's receive queue, where the
 *   kernel's parser picks them up (records queued before TLS_RX are parsed too).
 *   Node reads eagerly into the stream buffer, even while a stream is paused, so the
 *   channel must stop reading at the handshake's last byte (e.g. a server created
 *   with `pauseOnConnect`, or a handshake whose last message comes from this side
 *   before the peer may send records). We refuse when `readableLength > 0`, but we
 *   cannot see bytes a read already consumed: getting this wrong shows up as a
 *   failed read (the kernel parses the middle of a record as a header).
 * - RX delivers only application_data: for any other record type (alert, handshake,
 *   KeyUpdate) the kernel fails a plain read() with EIO ("received without a cmsg
 *   buffer set", tls.rst), because libuv passes no control-message buffer for
 *   TLS_GET_RECORD_TYPE; a record that fails authentication fails read() with
 *   EBADMSG. ferry therefore sends only application_data records (its end-of-stream
 *   is a frame, not an alert) and maps these socket errors to FERRY_E_INTEGRITY;
 *   `ktlsReadErrorReason` recognises them (libuv has no name for EBADMSG: Node's
 *   error has errno -74 and code 'Unknown system error -74').
 * - TCP_ULP needs a socket in TCP_ESTABLISHED: once the peer's FIN has arrived
 *   (CLOSE_WAIT) it fails with ENOTCONN. Offload right after the handshake, before
 *   the peer can have finished; in `auto` mode, fall back to userspace on any error.
 * - Key update: setting TLS_TX/TLS_RX a second time is a rekey, which only kernels
 *   with the TLS 1.3 rekey series (tls.rst "TLS 1.3 Key Updates", Linux 6.14) accept;
 *   older ones (the lab's 6.1) answer EBUSY. A channel that rekeys after 2^23 records
 *   must therefore be ready for enableKtls to fail on a direction already offloaded.
 *
 * `ktlsSupport()` says whether offload can work here (addon loaded and the kernel's
 * tls ULP registered, read from /proc/sys/net/ipv4/tcp_available_ulp; we do not run
 * modprobe). `decideKtls(mode)` turns `--ktls=auto|on|off` into a decision, with the
 * one FERRY_E_KTLS error for `on` where it is unavailable.
 */
import { existsSync, readFileSync } from 'node:fs';
import type net from 'node:net';
import { constants as osConstants, platform, release } from 'node:os';
import { errnoName, ErrorCodes, FerryError } from '../core/errors.js';
import { ktlsAddon, type KtlsAddon } from '../native/index.js';
import type { TrafficSecret } from './traffic-secret.js';

export type KtlsDirection = 'tx' | 'rx';
export type KtlsMode = 'auto' | 'on' | 'off';

export interface KtlsSupport {
  available: boolean;
  /** Why it is (un)available, one line, suitable for `-v` and the JSON summary. */
  reason: string;
}

const TLS_TX = 1;
const TLS_RX = 2;
const ULP_FILE = '/proc/sys/net/ipv4/tcp_available_ulp';
const MAX_SEQ = (1n << 64n) - 1n;

function loadAddon(): { addon: KtlsAddon | undefined; reason: string } {
  if (platform() !== 'linux') return { addon: undefined, reason: `kTLS is Linux-only (this is ${platform()})` };
  return ktlsAddon();
}

/** The kernel's registered TCP upper-layer protocols, or undefined if unreadable. */
function kernelUlps(): string[] | undefined {
  try {
    return readFileSync(ULP_FILE, 'utf8').trim().split(/\s+/).filter((s) => s !== '');
  } catch {
    return undefined;
  }
}

/** Whether this kernel ships tls as a module that is simply not loaded yet. */
function tlsModuleOnDisk(): boolean {
  const dir = `/lib/modules/${release()}/kernel/net/tls`;
  return ['tls.ko', 'tls.ko.xz', 'tls.ko.zst', 'tls.ko.gz'].some((f) => existsSync(`${dir}/${f}`));
}

/**
 * Can kTLS be used in this process? True when the addon is loaded and the kernel has
 * the tls ULP registered. Cheap (one small /proc read); not cached, so a `modprobe tls`
 * after start is noticed.
 */
export function ktlsSupport(): KtlsSupport {
  const { addon, reason } = loadAddon();
  if (!addon) return { available: false, reason };
  const ulps = kernelUlps();
  if (ulps === undefined) return { available: false, reason: `cannot read ${ULP_FILE} (not Linux, or /proc not mounted)` };
  if (!ulps.includes('tls')) {
    const listed = ulps.length > 0 ? ulps.join(' ') : 'nothing';
    const hint = tlsModuleOnDisk() ? '; the tls module exists but is not loaded: run `modprobe tls`' : '; no tls module found (kernel built without CONFIG_TLS?)';
    return { available: false, reason: `the kernel has no tls ULP (${ULP_FILE} lists ${listed})${hint}` };
  }
  return { available: true, reason: `kernel tls ULP and ${reason}` };
}

/**
 * Resolves `--ktls=auto|on|off`: `off` never offloads, `auto` offloads where
 * available, `on` offloads or throws FerryError(FERRY_E_KTLS) with the reason.
 */
export function decideKtls(mode: KtlsMode): { use: boolean; reason: string } {
  if (mode === 'off') return { use: false, reason: 'kTLS disabled (--ktls=off)' };
  const s = ktlsSupport();
  if (s.available) return { use: true, reason: s.reason };
  if (mode === 'on') throw new FerryError(ErrorCodes.KTLS, `--ktls=on but kTLS is not available: ${s.reason}`);
  return { use: false, reason: `userspace TLS: ${s.reason}` };
}

/**
 * The kernel's view of one direction's keys (struct tls12_crypto_info_aes_gcm_128
 * fields): salt = iv[0..4], iv = iv[4..12], rec_seq = seq big-endian. Fresh copies.
 */
export function kernelCryptoFields(secret: TrafficSecret): { key: Buffer; salt: Buffer; iv: Buffer; recSeq: Buffer } {
  if (secret.key.length !== 16) throw new FerryError(ErrorCodes.INTERNAL, `kTLS: AES-128-GCM key must be 16 bytes, got ${secret.key.length}`);
  if (secret.iv.length !== 12) throw new FerryError(ErrorCodes.INTERNAL, `kTLS: IV must be 12 bytes, got ${secret.iv.length}`);
  if (secret.seq < 0n || secret.seq > MAX_SEQ) throw new FerryError(ErrorCodes.INTERNAL, `kTLS: sequence number out of range`);
  const recSeq = Buffer.alloc(8);
  recSeq.writeBigUInt64BE(secret.seq);
  return {
    key: Buffer.from(secret.key),
    salt: Buffer.from(secret.iv.subarray(0, 4)),
    iv: Buffer.from(secret.iv.subarray(4, 12)),
    recSeq,
  };
}

interface SocketHandle {
  fd?: unknown;
  writeQueueSize?: unknown;
}

function peerName(socket: net.Socket): string {
  const addr = socket.remoteAddress;
  if (addr === undefined) return 'socket';
  return addr.includes(':') ? `[${addr}]:${String(socket.remotePort)}` : `${addr}:${String(socket.remotePort)}`;
}


function explain(step: 'ulp' | 'crypto', errno: number): string {
  const name = errnoName(errno) ?? `errno ${errno}`;
  const why: Record<string, string> = step === 'ulp'
    ? {
        ENOENT: 'the kernel has no tls ULP (CONFIG_TLS off, or the module is not loaded)',
        ENOTCONN: 'the socket is not in the ESTABLISHED state: not connected, or the peer already closed its side',
        EEXIST: 'the socket already has another upper-layer protocol',
        ENOPROTOOPT: 'the kernel does not support TCP_ULP',
        EOPNOTSUPP: 'the socket does not support TCP_ULP',
        ENOTSOCK: 'the file descriptor is not a socket',
        EBADF: 'the file descriptor is closed',
      }
    : {
        EBUSY: 'this direction already has keys and this kernel cannot rekey',
        EINVAL: 'the kernel rejected the TLS 1.3 AES-128-GCM parameters',
        ENOPROTOOPT: 'the tls ULP is not attached to the socket',
        ENOMEM: 'the kernel is out of memory',
      };
  return `${name} (${why[name] ?? 'system error'})`;
}

/**
 * Offloads one direction of `socket` to the kernel with `secret` (whose `seq` is the
 * sequence number of the next record in that direction). Throws FerryError
 * (FERRY_E_KTLS) naming the peer and the reason; on failure the socket is unchanged
 * except that the tls ULP may be attached, which is harmless: with no keys set, a
 * tls socket passes bytes through as plain TCP.
 */
export function enableKtls(socket: net.Socket, direction: KtlsDirection, secret: TrafficSecret): void {
  const peer = peerName(socket);
  const fail = (why: string): never => {
    throw new FerryError(ErrorCodes.KTLS, `${peer}: cannot enable kTLS ${direction.toUpperCase()}: ${why}`, { subject: peer });
  };
  if (direction !== 'tx' && direction !== 'rx') fail(`bad direction ${String(direction)}`);
  const handle = (socket as unknown as { _handle?: SocketHandle | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    return fail('the socket has no file descriptor (not a connected TCP socket, or already closed)');
  }
  if (socket.destroyed || socket.connecting) return fail('the socket is not connected');
  if (direction === 'tx') {
    const queued = socket.writableLength + (typeof handle?.writeQueueSize === 'number' ? handle.writeQueueSize : 0);
    if (queued > 0) return fail(`${queued} bytes written earlier are still queued in userspace`);
  } else if (socket.readableLength > 0) {
    return fail(`${socket.readableLength} bytes were already read into userspace past the handshake`);
  }
  const support = ktlsSupport();
  const { addon } = loadAddon();
  if (!support.available || !addon) return fail(support.reason);
  const fields = kernelCryptoFields(secret);

  // TCP_ULP once per socket (Documentation/networking/tls.rst "User interface").
  if (addon.getUlp(fd) !== 'tls') {
    const rc = addon.setUlp(fd);
    if (rc !== 0) fail(`setsockopt(TCP_ULP, "tls") failed: ${explain('ulp', rc)}`);
  }
  const rc = addon.setCrypto(fd, direction === 'tx' ? TLS_TX : TLS_RX, fields.key, fields.salt, fields.iv, fields.recSeq);
  fields.key.fill(0);
  if (rc !== 0) fail(`setsockopt(SOL_TLS, TLS_${direction.toUpperCase()}) failed: ${explain('crypto', rc)}`);
}

/**
 * If `err` (from a socket with kTLS RX) is one of the kernel's record-layer errors,
 * a one-line reason for FerryError(FERRY_E_INTEGRITY); otherwise undefined.
 * EBADMSG: a record failed authentication. EIO: a record of a type other than
 * application_data (a plain read() has no cmsg buffer to receive its type).
 */
export function ktlsReadErrorReason(err: unknown): string | undefined {
  const errno = (err as NodeJS.ErrnoException | undefined)?.errno;
  if (errno === -osConstants.errno.EBADMSG) return 'a record failed authentication (kTLS RX: EBADMSG)';
  if (errno === -osConstants.errno.EIO) return 'a record that is not application_data arrived (kTLS RX: EIO)';
  return undefined;
}
