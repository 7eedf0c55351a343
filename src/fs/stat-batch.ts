/**
 * Batched lstat of given names inside one directory: the quick check's half of the
 * walk, for the receiver's decisions (is DST's copy of each file already right?).
 * The local copy gets the same records from the walk's paired listing (fs/walk
 * `peer`), in the call that lists the source directory.
 *
 * Why: on a re-run where nothing changed, that quick check is all the work there is,
 * and done one file at a time from JavaScript it is an lstat through
 * `/proc/self/fd/N/name` (the kernel resolves the magic link every time) that builds a
 * Stats object with four Dates, per file. Here the names of one directory go in one
 * call: natively (native/fs-walk.c `statAt`) fstatat relative to the directory's
 * verified descriptor, on a pool thread, into packed arrays; without the addon
 * (FERRY_NATIVE=0) the same records come from lstat in a loop, with the same results.
 *
 * It decides nothing: the caller (fs/safe-writer's quickCheckFiles) judges each
 * record. The records have the layout of the walk's native listing, per name i:
 *   nums[10i+3] st_mode, [10i+4] size, [10i+5] nlink, [10i+6] blocks,
 *   [10i+7] errno of the lstat (0: ok; ENOENT: no such entry; then the rest is 0),
 *   [10i+8] uid, [10i+9] gid   (10i..10i+2 are unused here: 0, 0, -1)
 *   big[3i] mtime in ns, [3i+1] device, [3i+2] inode
 *
 *   const r = await statNames(dirFd, `/proc/self/fd/${dirFd}`, ['a', 'b']);
 */
import { lstatSync } from 'node:fs';
import { statAtAddon, type StatAtAddon } from '../native/index.js';

export const STAT_NUMS = 10;
export const STAT_BIGS = 3;
/** Offsets inside one record of `nums`. */
export const ST_MODE = 3;
export const ST_SIZE = 4;
export const ST_NLINK = 5;
export const ST_BLOCKS = 6;
export const ST_ERRNO = 7;
export const ST_UID = 8;
export const ST_GID = 9;

export interface StatRecords {
  nums: Float64Array;
  big: BigInt64Array;
}

/**
 * lstat each of `names` inside the directory held by `dirFd` (which `dirPath`, its
 * `/proc/self/fd/N`, also names: the fallback's way in). The descriptor must stay
 * open until the promise settles. `native: false` forces the fallback (tests).
 */
export function statNames(dirFd: number, dirPath: string, names: readonly string[], native = true): Promise<StatRecords> {
  const addon: StatAtAddon | undefined = native ? statAtAddon() : undefined;
  if (addon !== undefined) {
    let joined = '';
    for (const n of names) joined += `${n}\0`;
    return addon.statAt(dirFd, Buffer.from(joined, 'utf8'), names.length).then(([nums, big]) => ({ nums, big }));
  }
  return Promise.resolve(statNamesSync(dirPath, names));
}

/** The fallback: the same records, from lstat of `dirPath/name`. */
export function statNamesSync(dirPath: string, names: readonly string[]): StatRecords {
  const nums = new Float64Array(names.length * STAT_NUMS);
  const big = new BigInt64Array(names.length * STAT_BIGS);
  for (let i = 0; i < names.length; i++) {
    const o = i * STAT_NUMS;
    nums[o + 2] = -1;
    let st;
    try {
      st = lstatSync(`${dirPath}/${names[i]}`, { bigint: true });
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).errno;
      nums[o + ST_ERRNO] = typeof errno === 'number' && errno !== 0 ? Math.abs(errno) : 5; // EIO when unknown
      continue;
    }
    nums[o + ST_MODE] = Number(st.mode);
    nums[o + ST_SIZE] = Number(st.size);
    nums[o + ST_NLINK] = Number(st.nlink);
    nums[o + ST_BLOCKS] = Number(st.blocks);
    nums[o + ST_UID] = Number(st.uid);
    nums[o + ST_GID] = Number(st.gid);
    const b = i * STAT_BIGS;
    big[b] = st.mtimeNs;
    big[b + 1] = BigInt.asIntN(64, st.dev);
    big[b + 2] = BigInt.asIntN(64, st.ino);
  }
  return { nums, big };
}
