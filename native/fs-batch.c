/*
 * ferry's file data plane: whole batches of small-file copies in one call, off the
 * main thread.
 *
 * What it is for: copying a regular file safely costs about ten system calls (open
 * the source, check it is still the file the walk saw, create a temp file, copy,
 * set mode and times, close, rename). Made one by one from JavaScript, each is a
 * promise and, through libuv's thread pool, a cross-thread wake-up; on 100k small
 * files that overhead, not the disk, is what a copy costs. Here one N-API async
 * work runs a whole batch on a pool thread and wakes the main thread once.
 *
 * It decides nothing. TypeScript (src/fs/batch-copy.ts) chose every name (the temp
 * name, the final name), the directory (a descriptor of a directory of DST the
 * SafeWriter verified and keeps open for the call, src/fs/dir-handles.ts: names
 * are resolved relative to it, never through a path a local user could have
 * redirected since), every mode and time, and what a failure means. This file only
 * executes the steps, in this order, for each item:
 *
 *   1. open the source with O_NOFOLLOW|O_NONBLOCK (a symlink or FIFO swapped in is
 *      refused or never blocks), fstat it and require a regular file with the
 *      device, inode and size the walk saw (a parent directory swapped for a
 *      symlink leads to another inode: refused, CVE-2024-12747's class);
 *   2. create the temp file in the given directory descriptor with openat
 *      O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 (a leftover temp file of an
 *      interrupted run — ours by its name — is removed and creation retried once);
 *   3. copy `size` bytes with copy_file_range (read/write where the kernel refuses),
 *      then fstat the source again: a different size or mtime means it changed
 *      while being copied;
 *   4. fchmod, optional fsync, futimens with nanoseconds, close (its error counts);
 *   5. renameat onto the final name. A failure at any step after 2 unlinks the temp
 *      file: nothing partial is ever left under a final name.
 *
 * Results: for item i, out[2i] = the step that failed (0: published) and
 * out[2i+1] = errno (0 for a check that failed without one).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>

#include "fs-batch.h"

enum {
  STEP_OK = 0,
  STEP_OPEN_SRC = 1,
  STEP_NOT_REGULAR = 2,
  STEP_CHANGED = 3,
  /* 4 was STEP_OPEN_DIR: the directory now comes open, verified by the caller. */
  STEP_CREATE = 5,
  STEP_READ = 6,
  STEP_WRITE = 7,
  STEP_META = 8,
  STEP_RENAME = 9,
};

#define FLAG_FSYNC 1
/** Numbers per item in `nums`. */
#define NUMS 6

/** Items per call: bounds the memory one call may take. */
#define MAX_ITEMS 4096

typedef struct {
  const char *src, *temp, *name;
  int dirfd;
  uint64_t dev, ino;
  int64_t size, mtime_sec, mtime_nsec;
  uint32_t mode;
  int32_t flags;
  int32_t step, err;
} item_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  item_t *items;
  size_t n;
  char *arena;
} batch_t;

static int copy_rw(int in, int out, int64_t size, int *step) {
  char buf[65536];
  int64_t off = 0;
  while (off < size) {
    size_t want = (size - off) < (int64_t)sizeof buf ? (size_t)(size - off) : sizeof buf;
    ssize_t r = pread(in, buf, want, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      *step = STEP_READ;
      return errno;
    }
    if (r == 0) {
      *step = STEP_CHANGED; /* shorter than the walk saw */
      return 0;
    }
    ssize_t done = 0;
    while (done < r) {
      ssize_t w = pwrite(out, buf + done, (size_t)(r - done), off + done);
      if (w < 0) {
        if (errno == EINTR) continue;
        *step = STEP_WRITE;
        return errno;
      }
      done += w;
    }
    off += r;
  }
  return 0;
}

/* Returns 0 when all `size` bytes were copied, else sets *step and returns errno (or 0). */
static int copy_data(int in, int out, int64_t size, int *step) {
  loff_t in_off = 0, out_off = 0;
  while (in_off < size) {
    ssize_t r = copy_file_range(in, &in_off, out, &out_off, (size_t)(size - in_off), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (in_off == 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF)) {
        return copy_rw(in, out, size, step);
      }
      int e = errno;
      *step = (e == ENOSPC || e == EDQUOT || e == EFBIG || e == EROFS) ? STEP_WRITE : STEP_READ;
      return e;
    }
    if (r == 0) {
      *step = STEP_CHANGED;
      return 0;
    }
  }
  return 0;
}

static void run_item(item_t *it) {
  it->step = STEP_OK;
  it->err = 0;
  int src = open(it->src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (src < 0) {
    it->step = STEP_OPEN_SRC;
    it->err = errno;
    return;
  }
  struct stat st;
  if (fstat(src, &st) != 0) {
    it->step = STEP_OPEN_SRC;
    it->err = errno;
    close(src);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    it->step = STEP_NOT_REGULAR;
    close(src);
    return;
  }
  if ((uint64_t)st.st_dev != it->dev || (uint64_t)st.st_ino != it->ino || (int64_t)st.st_size != it->size) {
    it->step = STEP_CHANGED;
    close(src);
    return;
  }
  int dfd = it->dirfd;
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int tmp = openat(dfd, it->temp, flags, 0600);
  if (tmp < 0 && errno == EEXIST) {
    unlinkat(dfd, it->temp, 0); /* an interrupted run's temp file: ours by its name */
    tmp = openat(dfd, it->temp, flags, 0600);
  }
  if (tmp < 0) {
    it->step = STEP_CREATE;
    it->err = errno;
    close(src);
    return;
  }
  int step = STEP_OK, e = copy_data(src, tmp, it->size, &step);
  if (step == STEP_OK) {
    struct stat after;
    if (fstat(src, &after) != 0) {
      step = STEP_READ;
      e = errno;
    } else if ((int64_t)after.st_size != it->size || (int64_t)after.st_mtim.tv_sec != it->mtime_sec ||
               (int64_t)after.st_mtim.tv_nsec != it->mtime_nsec) {
      step = STEP_CHANGED;
    }
  }
  close(src);
  if (step == STEP_OK) {
    struct timespec ts[2];
    ts[0].tv_sec = (time_t)it->mtime_sec;
    ts[0].tv_nsec = (long)it->mtime_nsec;
    ts[1] = ts[0];
    if (fchmod(tmp, (mode_t)it->mode) != 0 || ((it->flags & FLAG_FSYNC) && fsync(tmp) != 0) || futimens(tmp, ts) != 0) {
      step = STEP_META;
      e = errno;
    }
  }
  if (close(tmp) != 0 && step == STEP_OK) {
    step = STEP_WRITE;
    e = errno;
  }
  if (step == STEP_OK && renameat(dfd, it->temp, dfd, it->name) != 0) {
    step = STEP_RENAME;
    e = errno;
  }
  if (step != STEP_OK) unlinkat(dfd, it->temp, 0);
  it->step = step;
  it->err = e;
}

static void execute(napi_env env, void *data) {
  (void)env;
  batch_t *b = data;
  for (size_t i = 0; i < b->n; i++) run_item(&b->items[i]);
}

static void complete(napi_env env, napi_status status, void *data) {
  batch_t *b = data;
  napi_value ab, arr;
  void *raw = NULL;
  if (status == napi_ok && napi_create_arraybuffer(env, b->n * 2 * sizeof(int32_t), &raw, &ab) == napi_ok &&
      napi_create_typedarray(env, napi_int32_array, b->n * 2, ab, 0, &arr) == napi_ok) {
    int32_t *out = raw;
    for (size_t i = 0; i < b->n; i++) {
      out[2 * i] = b->items[i].step;
      out[2 * i + 1] = b->items[i].err;
    }
    napi_resolve_deferred(env, b->deferred, arr);
  } else {
    napi_value msg, err;
    napi_create_string_utf8(env, "ferry native copyFiles: the batch did not run", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, b->deferred, err);
  }
  napi_delete_async_work(env, b->work);
  free(b->items);
  free(b->arena);
  free(b);
}

/*
 * copyFiles(strings, nums, ids) -> Promise<Int32Array>
 *   strings: Buffer of NUL-terminated UTF-8 strings, three per item: src, temp, name
 *            (temp and name are single names inside the directory);
 *   nums: Float64Array, six per item: size, mtimeSec, mtimeNsec, mode, flags, dirfd
 *         (an open directory descriptor the caller keeps open until the promise settles);
 *   ids: BigUint64Array, two per item: dev, ino.
 * Packed arrays, not objects: reading N-API values one by one cost more than the copy.
 */
static napi_value copy_files(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], promise;
  void *sdata = NULL, *ndata = NULL, *idata = NULL;
  size_t slen = 0, nlen = 0, ilen = 0, off;
  napi_typedarray_type nt, it_;
  napi_value ab;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_buffer_info(env, argv[0], &sdata, &slen) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &nt, &nlen, &ndata, &ab, &off) != napi_ok || nt != napi_float64_array ||
      napi_get_typedarray_info(env, argv[2], &it_, &ilen, &idata, &ab, &off) != napi_ok || it_ != napi_biguint64_array) {
    napi_throw_type_error(env, NULL, "copyFiles(strings: Buffer, nums: Float64Array, ids: BigUint64Array)");
    return NULL;
  }
  size_t n = nlen / NUMS;
  if (n == 0 || n > MAX_ITEMS || nlen != n * NUMS || ilen != n * 2 || slen > 64u * 1024 * 1024 || slen == 0 ||
      ((const char *)sdata)[slen - 1] != 0) {
    napi_throw_range_error(env, NULL, "copyFiles: 1..4096 items, six numbers and two ids each, NUL-terminated strings");
    return NULL;
  }
  batch_t *b = calloc(1, sizeof *b);
  if (b) {
    b->items = calloc(n, sizeof(item_t));
    b->arena = malloc(slen);
  }
  if (!b || !b->items || !b->arena) {
    if (b) {
      free(b->items);
      free(b->arena);
    }
    free(b);
    napi_throw_error(env, NULL, "copyFiles: out of memory");
    return NULL;
  }
  memcpy(b->arena, sdata, slen);
  b->n = n;
  const double *nums = ndata;
  const uint64_t *ids = idata;
  const char *p = b->arena, *end = b->arena + slen;
  for (size_t i = 0; i < n; i++) {
    item_t *it = &b->items[i];
    const char **strs[3] = {&it->src, &it->temp, &it->name};
    for (int k = 0; k < 3; k++) {
      if (p >= end) goto malformed;
      *strs[k] = p;
      p += strlen(p) + 1;
    }
    /* Names inside the directory: never a path that could leave it. */
    if (it->temp[0] == 0 || it->name[0] == 0 || strchr(it->temp, '/') || strchr(it->name, '/')) goto malformed;
    const double *v = nums + NUMS * i;
    double size = v[0], sec = v[1], nsec = v[2], dirfd = v[5];
    if (!(size >= 0) || !(nsec >= 0) || !(nsec < 1e9) || !(dirfd >= 0) || !(dirfd <= INT32_MAX)) goto malformed;
    it->size = (int64_t)size;
    it->mtime_sec = (int64_t)sec;
    it->mtime_nsec = (int64_t)nsec;
    it->mode = (uint32_t)v[3] & 07777;
    it->flags = (int32_t)v[4];
    it->dirfd = (int)dirfd;
    it->dev = ids[2 * i];
    it->ino = ids[2 * i + 1];
  }
  napi_value name;
  if (napi_create_promise(env, &b->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "ferry.copyFiles", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, b, &b->work) != napi_ok ||
      napi_queue_async_work(env, b->work) != napi_ok) {
    free(b->items);
    free(b->arena);
    free(b);
    napi_throw_error(env, NULL, "copyFiles: could not queue the batch");
    return NULL;
  }
  return promise;
malformed:
  free(b->items);
  free(b->arena);
  free(b);
  napi_throw_type_error(env, NULL, "copyFiles: malformed batch");
  return NULL;
}

napi_status ferry_fs_batch_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"copyFiles", NULL, copy_files, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

#ifdef FERRY_FS_BATCH_STANDALONE
static napi_value init(napi_env env, napi_value exports) {
  if (ferry_fs_batch_init(env, exports) != napi_ok) return NULL;
  return exports;
}
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
#endif
