/*
 * net-batch.c (part of ferry_native): the network transfer's per-file work in batches.
 *
 * What it is for: a network transfer of 10,000 image-sized files spent most of its
 * CPU per file, not per byte. The sender handed each batch of reads to a worker
 * thread (a structured-clone message, a fresh transferred ArrayBuffer per batch that
 * the garbage collector then had to free), the receiver fed every byte to two
 * XXH64 objects of a JavaScript package, one pass per seed. Here:
 *
 *   hashInit(state) / hashUpdate(state, data) / hashDigest(state, out16)
 *       ferry's content hash (content-hash.c, fs/checksum.ts: XXH3-64 with seed 0, then
 *       with seed 0x9e3779b97f4a7c15, each big-endian) over any number of updates. The
 *       state lives in a caller-owned Uint8Array of hashStateBytes: no objects, no
 *       finalizers; a state that is not one (checked) is a RangeError.
 *   hashOf(data, out16)                the same for one buffer
 *   readFiles(paths, want, out, hashes, res, opts) -> Promise<void>
 *       on a pool thread, for each file i: open(O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY),
 *       fstat and require a regular file with the walk's device, inode, size and mtime,
 *       and start reading it: a file up to 1 MiB the page cache does not hold is read
 *       with O_DIRECT through AIO when opts allow (below, "Direct reads"), any other is
 *       handed to the readahead (POSIX_FADV_WILLNEED, up to 1 MiB) — every file of a
 *       window of 64 first; then for each file read it whole into `out` (files laid end to
 *       end), fstat again and require the same size and mtime, close; hash it into
 *       hashes[16i..]. res[2i] = status, res[2i+1] = errno. `out` and `hashes` are the
 *       caller's and reused.
 *   publishFiles(strings, nums, data[], res, opts) -> Promise<void>
 *       on a pool thread, for each file i, relative to the directory descriptor the
 *       caller opened on a verified directory of DST (fs/dir-handles): create the file
 *       without a name (O_TMPFILE, where the filesystem has it; else as `temp` with
 *       O_CREAT|O_EXCL|O_NOFOLLOW 0600, a leftover of ours by that name removed and
 *       creation retried once), pwrite its bytes from `data`, ftruncate to `size` when
 *       the bytes end early (a trailing hole), fchmod, futimens (nanoseconds), then
 *       publish: a nameless file is linked as `name` (linkat, which never replaces: a
 *       name that exists after all is replaced through `temp` and renameat), a temp
 *       file is closed and renamed onto `name`; on any failure nothing is left under
 *       either name, and a nameless file vanishes by itself even on kill -9. As in
 *       fs-batch.c, the nameless way costs one directory insertion per file instead of
 *       two insertions and a removal. The bytes are written from the caller's buffers
 *       (one per file), except, when opts allow, the whole 4 KiB blocks of a file with
 *       16 KiB to 1 MiB of them: copied into aligned staging memory and written with
 *       O_DIRECT through AIO (below, "Direct bodies").
 *   writeBehind(fd, offset, length) -> Promise<void>
 *       on a pool thread, sync_file_range(SYNC_FILE_RANGE_WRITE) of that range: start
 *       writing the dirty pages of a large file's finished part to the disk now, while
 *       the rest still arrives, instead of leaving the whole file to the flusher threads
 *       and to whoever calls sync afterwards. A hint: its result is not reported (a
 *       write error stays recorded in the file for fsync, as with any buffered write).
 *       The caller keeps the descriptor open until the promise settles.
 *   directOpen(fd, align, write) -> number
 *       a second descriptor on the same open file, for writing (or reading) with O_DIRECT (opened
 *       through /proc/self/fd, so it is that very file, never a path looked up again),
 *       with the filesystem's alignment for direct I/O (statx STATX_DIOALIGN) in
 *       align[0] (memory) and align[1] (file offset and length); or -errno when the
 *       filesystem, the kernel or /proc do not offer it. Synchronous (two system calls).
 *   directWrite(dfd, fd, data, offset, align, res) -> Promise<void>
 *       on a pool thread, write `data` at `offset`: its aligned part through `dfd`
 *       (O_DIRECT: from the caller's memory when it is aligned, else through a staging
 *       buffer of the thread's own), the unaligned rest, or all of it when the offset is
 *       unaligned, through `fd` as an ordinary write. Direct I/O skips the page cache:
 *       no page to allocate, fill and write back for bytes nobody reads again soon.
 *       res[0] = 0 (done, direct), 1 (done, but the filesystem refused direct I/O: do
 *       not try again on this file), -1 (failed: errno in res[1]).
 *   directRead(dfd, data, offset, align) -> number
 *       synchronous (the sender's reader thread calls it): fill `data` from `offset` of
 *       the file through its O_DIRECT descriptor (a staging buffer when `data` is not
 *       aligned; the length rounded up, as a read may run past the end of the file);
 *       returns the bytes read (fewer at the end of the file) or -errno.
 *   alignGap(data, align) -> number
 *       how many bytes past the start of `data` its memory reaches a multiple of `align`
 *       (a power of two): where the reader thread places a chunk so that directRead
 *       goes straight into it.
 *   directClose(dfd)
 *       close a descriptor directOpen returned (Node's fs did not open it, so it is not
 *       Node's to close).
 *   cachedFraction(fd, size) -> number
 *       how much of the file's first `size` bytes the page cache holds, 0..1, from
 *       cachestat(2) (Linux 6.5); -1 where the kernel does not have it.
 *
 * It decides nothing: TypeScript (transfer/native-files.ts) chose every path, name, mode,
 * time and byte range, checked every length, and decides what each status means. Each
 * function has a TypeScript fallback with the same results (the worker-thread reader,
 * the @node-rs/xxhash hash, the synchronous small-file writer).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/aio_abi.h>
#include <unistd.h>
#include <node_api.h>

#include "fs-batch.h"
#include "net-batch.h"

#include "content-hash.h"

/* ---------------------------------------------------------------- argument helpers */

static int get_u8(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_uint8_array) return 0;
  *data = p;
  return 1;
}

static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  if (napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL) != napi_ok || type != want) return 0;
  return 1;
}

static napi_value undefined_value(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value hash_init(napi_env env, napi_callback_info info) {
  size_t argc = 1, len = 0;
  napi_value argv[1];
  uint8_t *st = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !get_u8(env, argv[0], &st, &len) ||
      len < content_hash_state_bytes()) {
    napi_throw_type_error(env, NULL, "hashInit(state: Uint8Array of hashStateBytes)");
    return NULL;
  }
  content_hash_init(st);
  return undefined_value(env);
}

static napi_value hash_update(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0, dlen = 0;
  napi_value argv[2];
  uint8_t *st = NULL, *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_u8(env, argv[0], &st, &len) ||
      len < content_hash_state_bytes() || !get_u8(env, argv[1], &data, &dlen)) {
    napi_throw_type_error(env, NULL, "hashUpdate(state: Uint8Array, data: Uint8Array)");
    return NULL;
  }
  if (!content_hash_valid(st)) {
    napi_throw_range_error(env, NULL, "hashUpdate: not a hash state");
    return NULL;
  }
  content_hash_update(st, data, dlen);
  return undefined_value(env);
}

static napi_value hash_digest(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0, olen = 0;
  napi_value argv[2];
  uint8_t *st = NULL, *out = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_u8(env, argv[0], &st, &len) ||
      len < content_hash_state_bytes() || !get_u8(env, argv[1], &out, &olen) || olen < 16) {
    napi_throw_type_error(env, NULL, "hashDigest(state: Uint8Array, out: Uint8Array(16))");
    return NULL;
  }
  if (!content_hash_valid(st)) {
    napi_throw_range_error(env, NULL, "hashDigest: not a hash state");
    return NULL;
  }
  content_hash_digest(st, out);
  return undefined_value(env);
}

static napi_value hash_of(napi_env env, napi_callback_info info) {
  size_t argc = 2, dlen = 0, olen = 0;
  napi_value argv[2];
  uint8_t *data = NULL, *out = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_u8(env, argv[0], &data, &dlen) ||
      !get_u8(env, argv[1], &out, &olen) || olen < 16) {
    napi_throw_type_error(env, NULL, "hashOf(data: Uint8Array, out: Uint8Array(16))");
    return NULL;
  }
  content_hash_of(data, dlen, out);
  return undefined_value(env);
}

/* hashKernel(name?: string): the content hash's stripe loop in use; with a name, switches to it
 * first if this CPU has it (tests run every kernel; all give the same digests and states). */
static napi_value hash_kernel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc >= 1) {
    char name[16];
    size_t got = 0;
    napi_valuetype t;
    if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string ||
        napi_get_value_string_utf8(env, argv[0], name, sizeof name, &got) != napi_ok) {
      napi_throw_type_error(env, NULL, "hashKernel(name?: string)");
      return NULL;
    }
    content_hash_use_kernel(name);
  }
  if (napi_create_string_utf8(env, content_hash_kernel(), NAPI_AUTO_LENGTH, &out) != napi_ok) return NULL;
  return out;
}

/* ---------------------------------------------------------------- batches on pool threads */

/** Items per call: bounds what one call may hold. */
#define MAX_ITEMS 4096

/* A batch keeps its JavaScript buffers alive (references) until it completes. */
#define MAX_REFS 6
typedef struct batch {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref refs[MAX_REFS];
  int nrefs;
  size_t n;
  char *arena;
  void *items;
  uint8_t *data;
  size_t data_len;
  uint8_t *hashes;
  int32_t *res;
  int32_t *opts; /* readFiles: in [0] direct allowed, [1] max cached %; out [2] files read direct;
                   publishFiles: in [0] direct allowed; out [1] files written direct */
} batch_t;

static void batch_free(napi_env env, batch_t *b) {
  for (int i = 0; i < b->nrefs; i++) napi_delete_reference(env, b->refs[i]);
  free(b->arena);
  free(b->items);
  free(b);
}

static void complete(napi_env env, napi_status status, void *data) {
  batch_t *b = data;
  if (status == napi_ok) {
    napi_resolve_deferred(env, b->deferred, undefined_value(env));
  } else {
    napi_value msg, err;
    napi_create_string_utf8(env, "ferry native: the batch did not run", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, b->deferred, err);
  }
  napi_delete_async_work(env, b->work);
  batch_free(env, b);
}

static int keep(napi_env env, batch_t *b, napi_value v) {
  if (b->nrefs >= MAX_REFS) return 0;
  return napi_create_reference(env, v, 1, &b->refs[b->nrefs++]) == napi_ok;
}

static napi_value queue(napi_env env, batch_t *b, const char *what, napi_async_execute_callback execute) {
  napi_value name, promise;
  if (napi_create_promise(env, &b->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, b, &b->work) != napi_ok ||
      napi_queue_async_work(env, b->work) != napi_ok) {
    batch_free(env, b);
    napi_throw_error(env, NULL, "ferry native: could not queue the batch");
    return NULL;
  }
  return promise;
}

/* Split a Buffer of NUL-terminated strings into `want` pointers (copied into b->arena). */
static int split_strings(batch_t *b, const char *src, size_t len, const char **out, size_t want) {
  if (len == 0 || src[len - 1] != 0) return 0;
  b->arena = malloc(len);
  if (!b->arena) return 0;
  memcpy(b->arena, src, len);
  const char *p = b->arena, *end = b->arena + len;
  for (size_t i = 0; i < want; i++) {
    if (p >= end) return 0;
    out[i] = p;
    p += strlen(p) + 1;
  }
  return p == end;
}

/* ---- staging memory */

/* Staging buffers for direct I/O, shared by the pool threads: one per call in flight,
 * kept for the next (their pages stay faulted in); at most STAGE_KEEP of each size are
 * kept, whatever the pool's size. */
#define STAGE_KEEP 8
#define STAGE_ALIGN 4096
typedef struct {
  pthread_mutex_t lock;
  size_t bytes;
  uint8_t *free[STAGE_KEEP];
  int nfree;
} stage_pool_t;

static uint8_t *stage_take(stage_pool_t *pool) {
  uint8_t *p = NULL;
  pthread_mutex_lock(&pool->lock);
  if (pool->nfree > 0) p = pool->free[--pool->nfree];
  pthread_mutex_unlock(&pool->lock);
  if (p == NULL && posix_memalign((void **)&p, STAGE_ALIGN, pool->bytes) != 0) p = NULL;
  return p;
}

static void stage_give(stage_pool_t *pool, uint8_t *p) {
  pthread_mutex_lock(&pool->lock);
  if (pool->nfree < STAGE_KEEP) {
    pool->free[pool->nfree++] = p;
    p = NULL;
  }
  pthread_mutex_unlock(&pool->lock);
  free(p);
}

/* Staging buffers for directWrite, directRead and publishFiles' direct bodies, from and
 * to unaligned memory (chunk_stages): their size (their alignment is STAGE_ALIGN; a
 * filesystem that asks more of memory is not written or read direct). */
#define STAGE_BYTES (1u << 20)
static stage_pool_t chunk_stages = {PTHREAD_MUTEX_INITIALIZER, STAGE_BYTES, {0}, 0};

/* ---- readFiles */

enum {
  RD_OK = 0,
  RD_OPEN = 1,        /* open failed: errno */
  RD_STAT = 2,        /* fstat failed: errno */
  RD_NOT_REGULAR = 3, /* no longer a regular file */
  RD_IDENTITY = 4,    /* another device or inode */
  RD_CHANGED = 5,     /* size or mtime differ from the walk's, before reading */
  RD_READ = 6,        /* read failed: errno */
  RD_CHANGED_AFTER = 7, /* shorter than listed, or size/mtime changed while read */
};

typedef struct {
  const char *path;
  int64_t size, mtime_ns, dev, ino, check_id;
  size_t off;
  int fd;
  int direct;       /* read with O_DIRECT into the batch's staging memory at stage_off */
  size_t stage_off;
} rd_item_t;

/* Small files read ahead as a batch (POSIX_FADV_WILLNEED) before any is read: at most this big. */
#define RD_READAHEAD_MAX (1 << 20)
/* Files of a batch handled together (opened and read ahead, or direct reads and writes in
 * flight): at most this many; also the size of a thread's AIO context. */
#define FILE_WINDOW 64

/*
 * Direct reads of small files. On a cold cache a buffered read fills fresh page-cache
 * pages and copies out of them; on a virtual machine whose free memory goes back to the
 * host, each fresh page is also a fault in the host. Nobody reads those pages again. So
 * a file the page cache does not hold (cachestat(2): at most the caller's percentage of
 * its pages) is switched to O_DIRECT (fcntl F_SETFL, the same open file) and read whole,
 * its length rounded up to DIRECT_BLOCK, into staging memory the batch takes from a
 * pool (batch_stages); the window's direct reads are in flight together through Linux
 * AIO (asynchronous for O_DIRECT; the thread's context is kept), while the window's other
 * files are read buffered; then each file's bytes are copied into `out` (staged because a
 * rounded-up read would run into the next file's bytes). A filesystem that refuses (fcntl or the read says EINVAL), a kernel
 * without cachestat or AIO, or a full staging area: buffered, as before. Linux AIO and
 * not io_uring: for O_DIRECT reads both keep the window in flight, AIO takes four system
 * calls and no shared rings, and it is there where io_uring is switched off
 * (kernel.io_uring_disabled, container seccomp profiles).
 */
#define DIRECT_BLOCK 4096
#define BATCH_STAGE_BYTES (4u << 20)
static stage_pool_t batch_stages = {PTHREAD_MUTEX_INITIALIZER, BATCH_STAGE_BYTES, {0}, 0};

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct ferry_cachestat_range {
  uint64_t off, len;
};
struct ferry_cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* The page cache's pages of the first `size` bytes of fd, and how many pages that is; -1 without cachestat. */
static int cached_pages(int fd, uint64_t size, uint64_t *cached, uint64_t *pages) {
  struct ferry_cachestat_range r = {0, size};
  struct ferry_cachestat cs;
  memset(&cs, 0, sizeof cs);
  if (syscall(__NR_cachestat, fd, &r, &cs, 0) != 0) return -1;
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  *cached = cs.nr_cache;
  *pages = (size + page - 1) / page;
  return 0;
}

/* This pool thread's AIO context (readFiles' direct reads, publishFiles' direct writes),
 * made on first use and kept (the pool's threads live as long as the process);
 * aio_state: 0 untried, 1 ready, -1 none. */
static __thread int aio_state;
static __thread aio_context_t aio_ctx;

static int aio_ready(void) {
  if (aio_state == 0) {
    aio_context_t ctx = 0;
    aio_state = syscall(__NR_io_setup, FILE_WINDOW, &ctx) == 0 ? 1 : -1;
    aio_ctx = ctx;
  }
  return aio_state == 1;
}

/* Set or clear O_DIRECT on an open file, and clear O_NONBLOCK (it was for the open): F_SETFL
 * changes only those status flags (and O_APPEND, O_NOATIME, O_ASYNC, which a read leaves
 * unset), so no F_GETFL is needed first. */
static int set_direct(int fd, int on) {
  return fcntl(fd, F_SETFL, on ? O_DIRECT : 0);
}

typedef struct {
  uint8_t *stage;      /* the batch's staging memory (batch_stages); NULL: no direct reads */
  int max_cached_pct;  /* a file with more of its pages cached is read buffered */
  size_t stage_used;   /* staging bytes taken in this window */
  int32_t direct_files;
} rd_window_t;

static size_t round_up(int64_t n) {
  return ((size_t)n + DIRECT_BLOCK - 1) & ~(size_t)(DIRECT_BLOCK - 1);
}

/* Whether the opened, checked file `it` is read direct: small, uncached, room to stage it,
 * and the filesystem takes O_DIRECT. */
static int choose_direct(rd_window_t *w, rd_item_t *it) {
  uint64_t cached, pages;
  if (w->stage == NULL || it->size <= 0 || round_up(it->size) > BATCH_STAGE_BYTES - w->stage_used) return 0;
  if (cached_pages(it->fd, (uint64_t)it->size, &cached, &pages) != 0 || cached * 100 > pages * (uint64_t)w->max_cached_pct)
    return 0;
  if (set_direct(it->fd, 1) != 0) return 0;
  it->direct = 1;
  it->stage_off = w->stage_used;
  w->stage_used += round_up(it->size);
  return 1;
}

/* Step 1 of a file: open it and check it is the file the walk listed; leaves it->fd open
 * (or -1 with res set) and either chooses it for a direct read or asks the kernel to
 * start reading it. */
static void read_open(batch_t *b, size_t i, rd_window_t *w) {
  rd_item_t *it = &((rd_item_t *)b->items)[i];
  int32_t *res = &b->res[2 * i];
  res[0] = RD_OK;
  res[1] = 0;
  it->direct = 0;
  it->fd = open(it->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (it->fd < 0) {
    res[0] = RD_OPEN;
    res[1] = errno;
    return;
  }
  struct stat st;
  if (fstat(it->fd, &st) != 0) {
    res[0] = RD_STAT;
    res[1] = errno;
  } else if (!S_ISREG(st.st_mode)) {
    res[0] = RD_NOT_REGULAR;
  } else if (it->check_id && ((int64_t)st.st_dev != it->dev || (int64_t)st.st_ino != it->ino)) {
    res[0] = RD_IDENTITY;
  } else if ((int64_t)st.st_size != it->size || (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec != it->mtime_ns) {
    res[0] = RD_CHANGED;
  } else {
    if (it->size > 0 && it->size <= RD_READAHEAD_MAX && !choose_direct(w, it))
      (void)posix_fadvise(it->fd, 0, (off_t)it->size, POSIX_FADV_WILLNEED);
    return;
  }
  close(it->fd);
  it->fd = -1;
}

/* The last step of a file whose bytes are in `out` (got of them, or res set): check it
 * did not change meanwhile, hash it, close it. */
static void read_finish(batch_t *b, size_t i, int64_t got) {
  rd_item_t *it = &((rd_item_t *)b->items)[i];
  int32_t *res = &b->res[2 * i];
  struct stat st;
  if (res[0] == RD_OK) {
    if (got != it->size) {
      res[0] = RD_CHANGED_AFTER;
    } else if (fstat(it->fd, &st) != 0) {
      res[0] = RD_STAT;
      res[1] = errno;
    } else if ((int64_t)st.st_size != it->size ||
               (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec != it->mtime_ns) {
      res[0] = RD_CHANGED_AFTER;
    } else {
      content_hash_of(b->data + it->off, (size_t)it->size, b->hashes + 16 * i);
    }
  }
  close(it->fd);
  it->fd = -1;
}

/* Step 2 of a buffered file: read it whole into `out`, then finish it. */
static void read_rest(batch_t *b, size_t i) {
  rd_item_t *it = &((rd_item_t *)b->items)[i];
  int32_t *res = &b->res[2 * i];
  if (it->fd < 0) return;
  uint8_t *dst = b->data + it->off;
  int64_t got = 0;
  while (res[0] == RD_OK && got < it->size) {
    ssize_t r = pread(it->fd, dst + got, (size_t)(it->size - got), got);
    if (r < 0) {
      if (errno == EINTR) continue;
      res[0] = RD_READ;
      res[1] = errno;
      break;
    }
    if (r == 0) break;
    got += r;
  }
  read_finish(b, i, got);
}

/* Step 2 of a direct file, its read done with result r (bytes, or -errno): a refusal
 * (EINVAL) is read again buffered; else its bytes are copied out of the staging memory. */
static void read_direct_done(batch_t *b, size_t i, int64_t r, rd_window_t *w) {
  rd_item_t *it = &((rd_item_t *)b->items)[i];
  int32_t *res = &b->res[2 * i];
  if (r == -EINVAL && set_direct(it->fd, 0) == 0) {
    read_rest(b, i);
    return;
  }
  if (r < 0) {
    res[0] = RD_READ;
    res[1] = (int32_t)-r;
  } else if (r == it->size) {
    memcpy(b->data + it->off, w->stage + it->stage_off, (size_t)r);
    w->direct_files++;
  }
  read_finish(b, i, r < 0 ? 0 : r);
}

/* Submit the window's direct reads; a file AIO would not take is read buffered instead.
 * Returns how many are in flight. */
static size_t read_submit(batch_t *b, size_t start, size_t end, const rd_window_t *w) {
  rd_item_t *items = b->items;
  struct iocb cbs[FILE_WINDOW], *ptrs[FILE_WINDOW];
  size_t n = 0;
  for (size_t i = start; i < end; i++) {
    if (items[i].fd < 0 || !items[i].direct) continue;
    memset(&cbs[n], 0, sizeof cbs[n]);
    cbs[n].aio_data = i;
    cbs[n].aio_lio_opcode = IOCB_CMD_PREAD;
    cbs[n].aio_fildes = (uint32_t)items[i].fd;
    cbs[n].aio_buf = (uint64_t)(uintptr_t)(w->stage + items[i].stage_off);
    cbs[n].aio_nbytes = round_up(items[i].size);
    cbs[n].aio_offset = 0;
    ptrs[n] = &cbs[n];
    n++;
  }
  size_t done = 0;
  while (done < n) {
    long r = syscall(__NR_io_submit, aio_ctx, (long)(n - done), ptrs + done);
    if (r > 0) {
      done += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    break; /* the rest go buffered */
  }
  for (size_t k = done; k < n; k++) {
    rd_item_t *it = &items[ptrs[k]->aio_data];
    it->direct = 0;
    if (set_direct(it->fd, 0) != 0) {
      b->res[2 * ptrs[k]->aio_data] = RD_READ;
      b->res[2 * ptrs[k]->aio_data + 1] = errno;
    }
  }
  return done;
}

/* Every file of a window of the batch is opened and checked first, and either handed to
 * the kernel's readahead or submitted as a direct read: on a cold cache the window's
 * reads are in flight together (the block layer merges neighbours) instead of one device
 * round trip per file. The window bounds the descriptors held open at once. */
static void read_execute(napi_env env, void *data) {
  (void)env;
  batch_t *b = data;
  rd_item_t *items = b->items;
  rd_window_t w = {0};
  if (b->opts != NULL && b->opts[0] == 1 && aio_ready()) w.stage = stage_take(&batch_stages);
  w.max_cached_pct = b->opts != NULL ? b->opts[1] : 0;
  for (size_t start = 0; start < b->n; start += FILE_WINDOW) {
    size_t end = start + FILE_WINDOW < b->n ? start + FILE_WINDOW : b->n;
    w.stage_used = 0;
    for (size_t i = start; i < end; i++) read_open(b, i, &w);
    size_t inflight = w.stage != NULL ? read_submit(b, start, end, &w) : 0;
    for (size_t i = start; i < end; i++)
      if (!items[i].direct) read_rest(b, i);
    struct io_event ev[FILE_WINDOW];
    while (inflight > 0) {
      long r = syscall(__NR_io_getevents, aio_ctx, 1L, (long)inflight, ev, NULL);
      if (r < 0) {
        if (errno == EINTR) continue;
        /* Cannot happen with a valid context; never reuse memory a read may still fill. */
        w.stage = NULL;
        aio_state = -1;
        for (size_t i = start; i < end; i++)
          if (items[i].direct && items[i].fd >= 0) {
            b->res[2 * i] = RD_READ;
            b->res[2 * i + 1] = errno;
            close(items[i].fd);
            items[i].fd = -1;
          }
        break;
      }
      for (long k = 0; k < r; k++) read_direct_done(b, (size_t)ev[k].data, ev[k].res, &w);
      inflight -= (size_t)r;
    }
  }
  if (w.stage != NULL) stage_give(&batch_stages, w.stage);
  if (b->opts != NULL) b->opts[2] = w.direct_files;
}

/*
 * readFiles(paths: Buffer, want: BigInt64Array, out: Uint8Array, hashes: Uint8Array, res: Int32Array) -> Promise<void>
 *   paths: NUL-terminated absolute paths, one per file;
 *   want: five per file: size, mtimeNs, dev, ino, checkIdentity (0/1);
 *   out: the files' bytes end to end (at least the sum of the sizes);
 *   hashes: 16 bytes per file; res: two per file (status, errno).
 */
static napi_value read_files(napi_env env, napi_callback_info info) {
  size_t argc = 6, plen = 0, wlen = 0, olen = 0, hlen = 0, rlen = 0, xlen = 0;
  napi_value argv[6];
  void *pdata = NULL, *wdata = NULL, *rdata = NULL, *xdata = NULL;
  uint8_t *odata = NULL, *hdata = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 ||
      napi_get_buffer_info(env, argv[0], &pdata, &plen) != napi_ok ||
      !get_typed(env, argv[1], napi_bigint64_array, &wdata, &wlen) || !get_u8(env, argv[2], &odata, &olen) ||
      !get_u8(env, argv[3], &hdata, &hlen) || !get_typed(env, argv[4], napi_int32_array, &rdata, &rlen) ||
      (argc >= 6 && (!get_typed(env, argv[5], napi_int32_array, &xdata, &xlen) || xlen < 3))) {
    napi_throw_type_error(env, NULL, "readFiles(paths: Buffer, want: BigInt64Array, out: Uint8Array, hashes: Uint8Array, res: Int32Array, opts?: Int32Array(3))");
    return NULL;
  }
  size_t n = wlen / 5;
  if (n == 0 || n > MAX_ITEMS || wlen != n * 5 || hlen < 16 * n || rlen < 2 * n) {
    napi_throw_range_error(env, NULL, "readFiles: 1..4096 files, five numbers, 16 hash bytes and two results each");
    return NULL;
  }
  batch_t *b = calloc(1, sizeof *b);
  rd_item_t *items = b ? calloc(n, sizeof *items) : NULL;
  const char **paths = b ? calloc(n, sizeof *paths) : NULL;
  if (!b || !items || !paths) {
    free(b);
    free(items);
    free(paths);
    napi_throw_error(env, NULL, "readFiles: out of memory");
    return NULL;
  }
  b->items = items;
  b->n = n;
  if (!split_strings(b, pdata, plen, paths, n)) {
    free(paths);
    batch_free(env, b);
    napi_throw_type_error(env, NULL, "readFiles: one NUL-terminated path per file");
    return NULL;
  }
  const int64_t *w = wdata;
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    rd_item_t *it = &items[i];
    it->path = paths[i];
    it->size = w[5 * i];
    it->mtime_ns = w[5 * i + 1];
    it->dev = w[5 * i + 2];
    it->ino = w[5 * i + 3];
    it->check_id = w[5 * i + 4];
    if (it->size < 0 || (uint64_t)it->size > olen - off) {
      free(paths);
      batch_free(env, b);
      napi_throw_range_error(env, NULL, "readFiles: the files do not fit in `out`");
      return NULL;
    }
    it->off = off;
    off += (size_t)it->size;
  }
  free(paths);
  b->data = odata;
  b->data_len = olen;
  b->hashes = hdata;
  b->res = rdata;
  b->opts = xdata;
  if (xdata != NULL) ((int32_t *)xdata)[2] = 0;
  for (size_t k = 0; k < argc && k < 6; k++) {
    if (!keep(env, b, argv[k])) {
      batch_free(env, b);
      napi_throw_error(env, NULL, "readFiles: could not hold the buffers");
      return NULL;
    }
  }
  return queue(env, b, "ferry.readFiles", read_execute);
}

/* Write all of p at off: 0, or -errno. */
static int pwrite_all(int fd, const uint8_t *p, size_t n, int64_t off) {
  while (n > 0) {
    ssize_t r = pwrite(fd, p, n, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) return -EIO;
    p += r;
    n -= (size_t)r;
    off += r;
  }
  return 0;
}

/* ---- publishFiles */

enum {
  PUB_OK = 0,
  PUB_OPEN_DIR = 1,
  PUB_CREATE = 2,
  PUB_WRITE = 3,
  PUB_META = 4,
  PUB_RENAME = 5,
};

typedef struct {
  const char *temp, *name;
  int dirfd;
  const uint8_t *src;
  int64_t size, mtime_sec, mtime_nsec, data_len;
  uint32_t mode;
} pub_item_t;

/* A body written direct must be at least this long (a shorter one is all tail). */
#define PUB_DIRECT_MIN (16u << 10)

/* One file of a publish window: its descriptor (-1: failed at creation, res says why),
 * whether it is nameless, and its direct body (0: none) in the window's staging memory. */
typedef struct {
  int fd, nameless;
  int64_t body;
  size_t stage_off;
} pub_state_t;

/* Create file i without a name (or as its temp name): 0, or -1 with res set. */
static int publish_open(batch_t *b, size_t i, pub_state_t *st) {
  pub_item_t *it = &((pub_item_t *)b->items)[i];
  int32_t *res = &b->res[2 * i];
  res[0] = PUB_OK;
  res[1] = 0;
  st->body = 0;
  st->fd = ferry_open_nameless(it->dirfd);
  st->nameless = st->fd >= 0;
  if (st->fd < 0) st->fd = ferry_create_temp(it->dirfd, it->temp);
  if (st->fd < 0) {
    res[0] = PUB_CREATE;
    res[1] = errno;
    return -1;
  }
  return 0;
}

/* Finish file i from `done` bytes already written (the rest buffered), or clean up after
 * the failure (step, e) that came first: size, mode and mtime, then publish and close. */
static void publish_finish(batch_t *b, size_t i, pub_state_t *st, int64_t done, int step, int e) {
  pub_item_t *it = &((pub_item_t *)b->items)[i];
  int32_t *res = &b->res[2 * i];
  int dfd = it->dirfd, fd = st->fd;
  const uint8_t *src = it->src;
  while (step == PUB_OK && done < it->data_len) {
    ssize_t w = pwrite(fd, src + done, (size_t)(it->data_len - done), done);
    if (w < 0) {
      if (errno == EINTR) continue;
      step = PUB_WRITE;
      e = errno;
      break;
    }
    done += w;
  }
  if (step == PUB_OK && it->data_len < it->size && ftruncate(fd, it->size) != 0) {
    step = PUB_WRITE;
    e = errno;
  }
  if (step == PUB_OK) {
    struct timespec ts[2];
    ts[0].tv_sec = (time_t)it->mtime_sec;
    ts[0].tv_nsec = (long)it->mtime_nsec;
    ts[1] = ts[0];
    if (fchmod(fd, (mode_t)it->mode) != 0 || futimens(fd, ts) != 0) {
      step = PUB_META;
      e = errno;
    }
  }
  st->fd = -1;
  if (st->nameless) {
    /* Publish by linking, which never replaces a name; one that exists after all is
     * replaced the temp file's way: linked under the temp name, then renamed. */
    if (step == PUB_OK && ferry_publish_nameless(fd, dfd, it->name, it->temp) != 0) {
      step = PUB_RENAME;
      e = errno;
    }
    if (close(fd) != 0 && step == PUB_OK) {
      step = PUB_WRITE;
      e = errno;
      unlinkat(dfd, it->name, 0); /* it was published: never leave a file whose last write failed */
    }
    res[0] = step;
    res[1] = e;
    return;
  }
  if (close(fd) != 0 && step == PUB_OK) {
    step = PUB_WRITE;
    e = errno;
  }
  if (step == PUB_OK && renameat(dfd, it->temp, dfd, it->name) != 0) {
    step = PUB_RENAME;
    e = errno;
  }
  if (step != PUB_OK) unlinkat(dfd, it->temp, 0);
  res[0] = step;
  res[1] = e;
}

/*
 * Direct bodies (opts[0] == 1): in each window of FILE_WINDOW files, a file with
 * PUB_DIRECT_MIN to STAGE_BYTES of whole 4 KiB blocks is sized first (ftruncate, so the
 * write is not an extending one, which ext4 would complete inside io_submit), switched
 * to O_DIRECT, its blocks copied into the batch's aligned staging memory and its write
 * submitted through Linux AIO at once; the other files are written buffered meanwhile,
 * as they come, then each direct file, as its write completes, gets its tail buffered
 * and is finished. EINVAL (no O_DIRECT here, or more alignment asked) sends the file, and the
 * rest of the batch, the buffered way; another error is the file's (ENOSPC, EIO).
 */
static int publish_prepare_direct(batch_t *b, size_t i, pub_state_t *st, uint8_t **stage, size_t *used, int *direct_ok) {
  pub_item_t *it = &((pub_item_t *)b->items)[i];
  int64_t body = it->data_len & ~(int64_t)(DIRECT_BLOCK - 1);
  if (body < (int64_t)PUB_DIRECT_MIN || body > (int64_t)STAGE_BYTES || *used + (size_t)body > BATCH_STAGE_BYTES) return 0;
  /* Taken at the first file that needs it: a batch of small files takes none. */
  if (*stage == NULL && (*stage = stage_take(&batch_stages)) == NULL) return 0;
  if (ftruncate(st->fd, it->size) != 0) return 0;
  if (set_direct(st->fd, 1) != 0) {
    *direct_ok = 0;
    return 0;
  }
  memcpy(*stage + *used, it->src, (size_t)body);
  st->body = body;
  st->stage_off = *used;
  *used += (size_t)body;
  return 1;
}

static void publish_execute(napi_env env, void *data) {
  (void)env;
  batch_t *b = data;
  uint8_t *stage = NULL;
  int direct_ok = b->opts != NULL && b->opts[0] == 1 && aio_ready();
  pub_state_t st[FILE_WINDOW];
  for (size_t start = 0; start < b->n; start += FILE_WINDOW) {
    size_t end = start + FILE_WINDOW < b->n ? start + FILE_WINDOW : b->n;
    struct iocb cbs[FILE_WINDOW];
    size_t inflight = 0, used = 0;
    for (size_t i = start; i < end; i++) {
      pub_state_t *s = &st[i - start];
      if (publish_open(b, i, s) != 0) continue;
      if (!direct_ok || !publish_prepare_direct(b, i, s, &stage, &used, &direct_ok)) {
        publish_finish(b, i, s, 0, PUB_OK, 0); /* buffered, at once, as without direct bodies */
        continue;
      }
      /* Submitted at once: the device works on it while the next files are prepared. */
      struct iocb *cb = &cbs[inflight];
      memset(cb, 0, sizeof *cb);
      cb->aio_data = i;
      cb->aio_lio_opcode = IOCB_CMD_PWRITE;
      cb->aio_fildes = (uint32_t)s->fd;
      cb->aio_buf = (uint64_t)(uintptr_t)(stage + s->stage_off);
      cb->aio_nbytes = (uint64_t)s->body;
      cb->aio_offset = 0;
      long r;
      do r = syscall(__NR_io_submit, aio_ctx, 1L, &cb);
      while (r < 0 && errno == EINTR);
      if (r == 1) {
        inflight++;
        continue;
      }
      /* AIO would not take it: buffered. */
      s->body = 0;
      if (set_direct(s->fd, 0) != 0) publish_finish(b, i, s, 0, PUB_WRITE, errno);
      else publish_finish(b, i, s, 0, PUB_OK, 0);
    }
    struct io_event ev[FILE_WINDOW];
    while (inflight > 0) {
      long r = syscall(__NR_io_getevents, aio_ctx, 1L, (long)inflight, ev, NULL);
      if (r < 0) {
        if (errno == EINTR) continue;
        /* Cannot happen with a valid context; never reuse memory a write may still read. */
        int err = errno;
        stage = NULL; /* leaked on purpose */
        direct_ok = 0;
        aio_state = -1;
        for (size_t i = start; i < end; i++)
          if (st[i - start].fd >= 0) publish_finish(b, i, &st[i - start], 0, PUB_WRITE, err);
        break;
      }
      for (long k = 0; k < r; k++) {
        size_t i = (size_t)ev[k].data;
        pub_state_t *s = &st[i - start];
        int64_t got = ev[k].res;
        if (set_direct(s->fd, 0) != 0) {
          publish_finish(b, i, s, 0, PUB_WRITE, errno);
        } else if (got == s->body) {
          b->opts[1]++;
          publish_finish(b, i, s, got, PUB_OK, 0);
        } else if (got == -EINVAL) {
          direct_ok = 0;
          publish_finish(b, i, s, 0, PUB_OK, 0);
        } else if (got < 0) {
          publish_finish(b, i, s, 0, PUB_WRITE, (int)-got);
        } else {
          publish_finish(b, i, s, got, PUB_OK, 0); /* a short write: the rest buffered */
        }
      }
      inflight -= (size_t)r;
    }
  }
  if (stage != NULL) stage_give(&batch_stages, stage);
}

/*
 * publishFiles(strings: Buffer, nums: Float64Array, data: Uint8Array[], res: Int32Array) -> Promise<void>
 *   strings: two NUL-terminated strings per file: temp, name;
 *   nums: five per file: size, mtimeSec, mtimeNsec, mode, dirfd (a directory descriptor the
 *   caller opened on the verified directory and keeps open until the promise settles);
 *   data[i]: file i's bytes from offset 0 (at most `size`; the rest is a trailing hole);
 *   res: two per file (step that failed, errno);
 *   opts (optional Int32Array(2)): in [0] 1 = write each body of at least PUB_DIRECT_MIN
 *   whole 4 KiB blocks with O_DIRECT (publish_execute), out [1] files written so.
 */
static napi_value publish_files(napi_env env, napi_callback_info info) {
  size_t argc = 5, slen = 0, nlen = 0, rlen = 0, xlen = 0;
  napi_value argv[5];
  void *sdata = NULL, *ndata = NULL, *rdata = NULL, *xdata = NULL;
  bool is_array = false;
  uint32_t ndatas = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      napi_get_buffer_info(env, argv[0], &sdata, &slen) != napi_ok ||
      !get_typed(env, argv[1], napi_float64_array, &ndata, &nlen) || napi_is_array(env, argv[2], &is_array) != napi_ok ||
      !is_array || napi_get_array_length(env, argv[2], &ndatas) != napi_ok ||
      !get_typed(env, argv[3], napi_int32_array, &rdata, &rlen) ||
      (argc >= 5 && (!get_typed(env, argv[4], napi_int32_array, &xdata, &xlen) || xlen < 2))) {
    napi_throw_type_error(env, NULL, "publishFiles(strings: Buffer, nums: Float64Array, data: Uint8Array[], res: Int32Array, opts?: Int32Array)");
    return NULL;
  }
  size_t n = nlen / 5;
  if (n == 0 || n > MAX_ITEMS || nlen != n * 5 || ndatas != n || rlen < 2 * n) {
    napi_throw_range_error(env, NULL, "publishFiles: 1..4096 files, five numbers, one buffer and two results each");
    return NULL;
  }
  batch_t *b = calloc(1, sizeof *b);
  pub_item_t *items = b ? calloc(n, sizeof *items) : NULL;
  const char **strs = b ? calloc(2 * n, sizeof *strs) : NULL;
  if (!b || !items || !strs) {
    free(b);
    free(items);
    free(strs);
    napi_throw_error(env, NULL, "publishFiles: out of memory");
    return NULL;
  }
  b->items = items;
  b->n = n;
  if (!split_strings(b, sdata, slen, strs, 2 * n)) {
    free(strs);
    batch_free(env, b);
    napi_throw_type_error(env, NULL, "publishFiles: two NUL-terminated strings per file");
    return NULL;
  }
  const double *nums = ndata;
  for (size_t i = 0; i < n; i++) {
    pub_item_t *it = &items[i];
    napi_value d;
    uint8_t *bytes = NULL;
    size_t blen = 0;
    it->temp = strs[2 * i];
    it->name = strs[2 * i + 1];
    double size = nums[5 * i], sec = nums[5 * i + 1], nsec = nums[5 * i + 2], dirfd = nums[5 * i + 4];
    if (napi_get_element(env, argv[2], (uint32_t)i, &d) != napi_ok || !get_u8(env, d, &bytes, &blen) || !(size >= 0) ||
        !(nsec >= 0) || !(nsec < 1e9) || (double)blen > size || !(dirfd >= 0) || dirfd > 2147483647.0 ||
        strchr(it->temp, '/') != NULL || strchr(it->name, '/') != NULL) {
      free(strs);
      batch_free(env, b);
      napi_throw_range_error(env, NULL, "publishFiles: malformed item");
      return NULL;
    }
    it->size = (int64_t)size;
    it->mtime_sec = (int64_t)sec;
    it->mtime_nsec = (int64_t)nsec;
    it->mode = (uint32_t)nums[5 * i + 3] & 07777;
    it->dirfd = (int)dirfd;
    it->src = bytes;
    it->data_len = (int64_t)blen;
  }
  free(strs);
  b->res = rdata;
  b->opts = xdata;
  /* The array holds every data buffer: referencing it keeps them all alive. */
  for (int k = 0; k < (xdata != NULL ? 5 : 4); k++) {
    if (!keep(env, b, argv[k])) {
      batch_free(env, b);
      napi_throw_error(env, NULL, "publishFiles: could not hold the buffers");
      return NULL;
    }
  }
  return queue(env, b, "ferry.publishFiles", publish_execute);
}

/* A batch of one item of `size` bytes (zeroed), or NULL with a JavaScript error thrown. */
static batch_t *batch_of_one(napi_env env, size_t size, const char *what) {
  batch_t *b = calloc(1, sizeof *b);
  void *item = calloc(1, size);
  if (!b || !item) {
    free(b);
    free(item);
    napi_throw_error(env, NULL, what);
    return NULL;
  }
  b->items = item;
  return b;
}

/* ---- writeBehind */

typedef struct {
  int fd;
  int64_t offset, length;
} write_behind_t;

static void write_behind_execute(napi_env env, void *data) {
  (void)env;
  const write_behind_t *w = ((batch_t *)data)->items;
  (void)sync_file_range(w->fd, (off64_t)w->offset, (off64_t)w->length, SYNC_FILE_RANGE_WRITE);
}

static napi_value write_behind(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t offset, length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || fd < 0 || offset < 0 || length < 0) {
    napi_throw_type_error(env, NULL, "writeBehind(fd, offset, length): a descriptor and a non-negative range");
    return NULL;
  }
  batch_t *b = batch_of_one(env, sizeof(write_behind_t), "writeBehind: out of memory");
  if (!b) return NULL;
  write_behind_t *w = b->items;
  w->fd = fd;
  w->offset = offset;
  w->length = length;
  return queue(env, b, "ferry.writeBehind", write_behind_execute);
}

/* ---- directOpen / directWrite */

static napi_value direct_open(napi_env env, napi_callback_info info) {
  size_t argc = 3, alen = 0;
  napi_value argv[3], out;
  int32_t fd;
  bool write = true;
  void *adata = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      !get_typed(env, argv[1], napi_int32_array, &adata, &alen) || alen < 2 ||
      (argc >= 3 && napi_get_value_bool(env, argv[2], &write) != napi_ok)) {
    napi_throw_type_error(env, NULL, "directOpen(fd, align: Int32Array(2), write?: boolean)");
    return NULL;
  }
  int32_t rc;
#ifdef STATX_DIOALIGN
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) != 0) {
    rc = -errno;
  } else if (!(sx.stx_mask & STATX_DIOALIGN) || sx.stx_dio_mem_align == 0 || sx.stx_dio_offset_align == 0 ||
             (sx.stx_dio_mem_align & (sx.stx_dio_mem_align - 1)) != 0 ||
             (sx.stx_dio_offset_align & (sx.stx_dio_offset_align - 1)) != 0 || sx.stx_dio_mem_align > STAGE_ALIGN ||
             sx.stx_dio_offset_align > 65536) {
    rc = -EOPNOTSUPP;
  } else {
    char path[48];
    snprintf(path, sizeof path, "/proc/self/fd/%d", (int)fd);
    int d = open(path, (write ? O_WRONLY : O_RDONLY) | O_DIRECT | O_CLOEXEC | O_NOCTTY);
    rc = d >= 0 ? d : -errno;
    ((int32_t *)adata)[0] = (int32_t)sx.stx_dio_mem_align;
    ((int32_t *)adata)[1] = (int32_t)sx.stx_dio_offset_align;
  }
#else
  rc = -EOPNOTSUPP;
#endif
  if (napi_create_int32(env, rc, &out) != napi_ok) return NULL;
  return out;
}

/* Alignments directOpen could have reported and the staging buffers meet: powers of two,
 * memory at most STAGE_ALIGN, offsets at most STAGE_BYTES. */
static int alignments_ok(int64_t mem_align, int64_t off_align) {
  return mem_align > 0 && off_align > 0 && (mem_align & (mem_align - 1)) == 0 && (off_align & (off_align - 1)) == 0 &&
         mem_align <= STAGE_ALIGN && off_align <= (int64_t)STAGE_BYTES;
}

typedef struct {
  int dfd, fd;
  int64_t offset;
  const uint8_t *src;
  size_t len;
  uint32_t mem_align, off_align;
} direct_write_t;

static void direct_write_execute(napi_env env, void *data) {
  (void)env;
  batch_t *b = data;
  const direct_write_t *w = b->items;
  int32_t *res = b->res;
  size_t body = w->offset % w->off_align == 0 ? w->len - w->len % w->off_align : 0;
  int rc = 0, fell = 0;
  if (body > 0) {
    if ((uintptr_t)w->src % w->mem_align == 0) {
      rc = pwrite_all(w->dfd, w->src, body, w->offset);
    } else {
      uint8_t *stage = stage_take(&chunk_stages);
      if (stage == NULL) rc = -ENOMEM;
      for (size_t done = 0; rc == 0 && done < body;) {
        size_t k = body - done < STAGE_BYTES ? body - done : STAGE_BYTES;
        memcpy(stage, w->src + done, k);
        rc = pwrite_all(w->dfd, stage, k, w->offset + (int64_t)done);
        done += k;
      }
      if (stage != NULL) stage_give(&chunk_stages, stage);
    }
    /* Refused (an alignment the filesystem did not report, a short write that left an
     * unaligned offset, no memory for staging): the ordinary write does it all. */
    if (rc == -EINVAL || rc == -EOPNOTSUPP || rc == -ENOMEM) {
      fell = 1;
      rc = 0;
      body = 0;
    }
  }
  if (rc == 0) rc = pwrite_all(w->fd, w->src + body, w->len - body, w->offset + (int64_t)body);
  res[0] = rc != 0 ? -1 : fell;
  res[1] = rc != 0 ? -rc : 0;
}

static napi_value direct_write(napi_env env, napi_callback_info info) {
  size_t argc = 6, len = 0, alen = 0, rlen = 0;
  napi_value argv[6];
  int32_t dfd, fd;
  int64_t offset;
  uint8_t *src = NULL;
  void *adata = NULL, *rdata = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 ||
      napi_get_value_int32(env, argv[0], &dfd) != napi_ok || napi_get_value_int32(env, argv[1], &fd) != napi_ok ||
      !get_u8(env, argv[2], &src, &len) || napi_get_value_int64(env, argv[3], &offset) != napi_ok ||
      !get_typed(env, argv[4], napi_int32_array, &adata, &alen) || alen < 2 ||
      !get_typed(env, argv[5], napi_int32_array, &rdata, &rlen) || rlen < 2 || dfd < 0 || fd < 0 || offset < 0) {
    napi_throw_type_error(env, NULL, "directWrite(dfd, fd, data: Uint8Array, offset, align: Int32Array(2), res: Int32Array(2))");
    return NULL;
  }
  int32_t mem_align = ((int32_t *)adata)[0], off_align = ((int32_t *)adata)[1];
  if (!alignments_ok(mem_align, off_align)) {
    napi_throw_range_error(env, NULL, "directWrite: the alignments are not powers of two the staging buffers meet");
    return NULL;
  }
  batch_t *b = batch_of_one(env, sizeof(direct_write_t), "directWrite: out of memory");
  if (!b) return NULL;
  *(direct_write_t *)b->items = (direct_write_t){.dfd = dfd, .fd = fd, .offset = offset, .src = src, .len = len, .mem_align = (uint32_t)mem_align, .off_align = (uint32_t)off_align};
  b->res = rdata;
  if (!keep(env, b, argv[2]) || !keep(env, b, argv[5])) {
    batch_free(env, b);
    napi_throw_error(env, NULL, "directWrite: could not hold the buffers");
    return NULL;
  }
  return queue(env, b, "ferry.directWrite", direct_write_execute);
}

static napi_value direct_read(napi_env env, napi_callback_info info) {
  size_t argc = 4, len = 0, alen = 0;
  napi_value argv[4], out;
  int32_t dfd;
  int64_t offset;
  uint8_t *dst = NULL;
  void *adata = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      napi_get_value_int32(env, argv[0], &dfd) != napi_ok || !get_u8(env, argv[1], &dst, &len) ||
      napi_get_value_int64(env, argv[2], &offset) != napi_ok || !get_typed(env, argv[3], napi_int32_array, &adata, &alen) ||
      alen < 2 || dfd < 0 || offset < 0) {
    napi_throw_type_error(env, NULL, "directRead(dfd, data: Uint8Array, offset, align: Int32Array(2))");
    return NULL;
  }
  int64_t mem_align = ((int32_t *)adata)[0], off_align = ((int32_t *)adata)[1];
  int64_t got = 0;
  if (!alignments_ok(mem_align, off_align) || offset % off_align != 0) {
    got = -EINVAL;
  } else if ((uintptr_t)dst % (uintptr_t)mem_align == 0 && len % (size_t)off_align == 0) {
    while ((size_t)got < len) {
      ssize_t r = pread(dfd, dst + got, len - (size_t)got, (off_t)(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        got = -errno;
        break;
      }
      if (r == 0) break;
      got += r;
      if (got % off_align != 0) break; /* the end of the file */
    }
  } else {
    uint8_t *stage = stage_take(&chunk_stages);
    if (stage == NULL) got = -ENOMEM;
    while (got >= 0 && (size_t)got < len) {
      size_t want = len - (size_t)got;
      if (want > STAGE_BYTES) want = STAGE_BYTES;
      size_t ask = (want + (size_t)off_align - 1) & ~((size_t)off_align - 1);
      ssize_t r = pread(dfd, stage, ask, (off_t)(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        got = -errno;
        break;
      }
      size_t n = (size_t)r < want ? (size_t)r : want;
      memcpy(dst + got, stage, n);
      got += (int64_t)n;
      /* The end of the file: nothing more, or a count off the alignment (an aligned short
       * count is not the end: read on from there, and an error then is reported as one). */
      if (r == 0 || (size_t)r % (size_t)off_align != 0) break;
    }
    if (stage != NULL) stage_give(&chunk_stages, stage);
  }
  if (napi_create_int64(env, got, &out) != napi_ok) return NULL;
  return out;
}

static napi_value cached_fraction(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  int32_t fd;
  int64_t size;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &size) != napi_ok || fd < 0 ||
      size < 0) {
    napi_throw_type_error(env, NULL, "cachedFraction(fd, size)");
    return NULL;
  }
  double f = -1;
  uint64_t cached, pages;
  if (cached_pages(fd, (uint64_t)size, &cached, &pages) == 0) {
    f = pages > 0 ? (double)cached / (double)pages : 1;
    if (f > 1) f = 1;
  }
  if (napi_create_double(env, f, &out) != napi_ok) return NULL;
  return out;
}

static napi_value align_gap(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0;
  napi_value argv[2], out;
  uint8_t *data = NULL;
  int32_t align;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_u8(env, argv[0], &data, &len) ||
      napi_get_value_int32(env, argv[1], &align) != napi_ok || align <= 0 || (align & (align - 1)) != 0) {
    napi_throw_type_error(env, NULL, "alignGap(data: Uint8Array, align: a power of two)");
    return NULL;
  }
  uintptr_t a = (uintptr_t)align;
  if (napi_create_int32(env, (int32_t)((a - (uintptr_t)data % a) % a), &out) != napi_ok) return NULL;
  return out;
}

static napi_value direct_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t dfd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &dfd) != napi_ok || dfd < 0) {
    napi_throw_type_error(env, NULL, "directClose(dfd)");
    return NULL;
  }
  close(dfd);
  return undefined_value(env);
}

napi_status ferry_net_batch_init(napi_env env, napi_value exports) {
  napi_value state_bytes;
  napi_status s = napi_create_int32(env, (int32_t)content_hash_state_bytes(), &state_bytes);
  if (s != napi_ok) return s;
  napi_property_descriptor props[] = {
      {"hashStateBytes", NULL, NULL, NULL, NULL, state_bytes, napi_enumerable, NULL},
      {"hashInit", NULL, hash_init, NULL, NULL, NULL, napi_default, NULL},
      {"hashUpdate", NULL, hash_update, NULL, NULL, NULL, napi_default, NULL},
      {"hashDigest", NULL, hash_digest, NULL, NULL, NULL, napi_default, NULL},
      {"hashOf", NULL, hash_of, NULL, NULL, NULL, napi_default, NULL},
      {"hashKernel", NULL, hash_kernel, NULL, NULL, NULL, napi_default, NULL},
      {"readFiles", NULL, read_files, NULL, NULL, NULL, napi_default, NULL},
      {"publishFiles", NULL, publish_files, NULL, NULL, NULL, napi_default, NULL},
      {"writeBehind", NULL, write_behind, NULL, NULL, NULL, napi_default, NULL},
      {"directOpen", NULL, direct_open, NULL, NULL, NULL, napi_default, NULL},
      {"directWrite", NULL, direct_write, NULL, NULL, NULL, napi_default, NULL},
      {"directRead", NULL, direct_read, NULL, NULL, NULL, napi_default, NULL},
      {"cachedFraction", NULL, cached_fraction, NULL, NULL, NULL, napi_default, NULL},
      {"alignGap", NULL, align_gap, NULL, NULL, NULL, napi_default, NULL},
      {"directClose", NULL, direct_close, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
