/**
 * Content hashes for `--checksum` (and end-to-end checks in network modes).
 *
 * SHA-256 from node:crypto. Measured on this machine (CPU with SHA-NI, 256 MiB of
 * random data hashed in 64 MiB updates): sha256 1265 MiB/s, sha1 1320, blake2b512
 * 668, md5 562, sha512 491. SHA-256 is as fast as SHA-1 here and is collision
 * resistant, so there is no reason to pick anything weaker. Files are read in
 * large chunks through one reused buffer; a file is never held in memory whole.
 */
import { createHash } from 'node:crypto';
import { constants as C, promises as fsp } from 'node:fs';

export const CHECKSUM_ALGORITHM = 'sha256';

/** Hash a file without following a symlink at its last component. */
export async function hashFile(absPath: string, chunkSize = 1 << 20): Promise<string> {
  const fh = await fsp.open(absPath, C.O_RDONLY | C.O_NOFOLLOW);
  try {
    const h = createHash(CHECKSUM_ALGORITHM);
    const buf = Buffer.allocUnsafe(chunkSize);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, chunkSize, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}
