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
 * redirected since), every mode and time, and what a failure means. This file only executes
 * the steps, in this order, for each item:
 *
 *   1. open the source with O_NOFOLLOW|O_NONBLOCK (a symlink or FIFO swapped in is
 *      refused or never blocks), fstat it and require a regular file with the
 *      device, inode and size the walk saw (a parent directory swapped for a
 *      symlink leads to another inode: refused, CVE-2024-12747's class). This is
 *      done for every item of the batch first, and each small source is handed to
 *      the kernel's readahead (POSIX_FADV_WILLNEED), so on a cold cache the reads
 *      of a whole batch are in flight together while one thread copies;
 *   2. create the file in the target directory, given as an open directory fd
 *      (the caller checked it is a real directory of DST) and a name relative to
 *      it. When the caller says the final name is free (FLAG_NEW) and the
 *      filesystem has O_TMPFILE, the file is created without a name; otherwise as
 *      the temp name with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 (a leftover temp
 *      file of an interrupted run — ours by its name — is removed and creation
 *      retried once). A new file may come without a temp name (the caller names
 *      one only when needed: computing it costs a hash per file); if it needs one
 *      after all (no O_TMPFILE here, or the final name exists), the item fails with
 *      STEP_NEED_TEMP, nothing created, and the caller submits it again with a
 *      temp name;
 *   3. copy `size` bytes with copy_file_range (read/write where the kernel refuses),
 *      then fstat the source again: a different size or mtime means it changed
 *      while being copied;
 *   4. fchmod, optional fsync, futimens with nanoseconds;
 *   5. publish: a nameless file is linked under its final name with linkat, which
 *      fails rather than replace anything (a name that appeared meanwhile: the file
 *      is then linked under the temp name and renamed, as below); a temp file is
 *      closed (its error counts) and renamed onto the final name with renameat.
 *      A failure at any step unlinks what was created: nothing partial is ever
 *      left under a final name, and a nameless file vanishes by itself even on
 *      kill -9.
 *
 * Why O_TMPFILE: a temp name costs two directory insertions, a removal and three
 * lookups per file, under the directory's lock; a nameless file then one linkat
 * costs one lookup and one insertion, as for `cp`, and keeps the publish atomic.
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
  /* A new file given no temp name needs one after all (see copy_item); nothing was published. */
  STEP_NEED_TEMP = 10,
};

#define FLAG_FSYNC 1
/* The caller believes the final name is free (a new file): try a nameless file. */
#define FLAG_NEW 2

/** Items per call: bounds the memory (and open source fds) one call may take. */
#define MAX_ITEMS 1024
/** Sources up to this size are read ahead together before the batch is copied. */
#define READAHEAD_MAX (1 << 20)
/** Numbers per item in the nums array, and 64-bit ids per item in the ids array. */
#define NUMS 4
#define IDS 3

typedef struct {
  const char *src, *temp, *name;
  uint64_t dev, ino;
  int64_t size, mtime_sec, mtime_nsec;
  uint32_t mode;
  int32_t flags;
  int dirfd;
  int srcfd;
  int32_t step, err;
} item_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  item_t *items;
  size_t n;
  char *arena;
} batch_t;

/* read/write where copy_file_range is refused (another filesystem): 64 KiB on the stack, 1 MiB for bigger files. */
static int copy_rw(int in, int out, int64_t size, int *step) {
  char small[65536];
  size_t cap = sizeof small;
  char *buf = small;
  if (size > (int64_t)sizeof small) {
    char *big = malloc(1 << 20);
    if (big) {
      buf = big;
      cap = 1 << 20;
    }
  }
  int64_t off = 0;
  int e = 0;
  while (off < size) {
    size_t want = (size - off) < (int64_t)cap ? (size_t)(size - off) : cap;
    ssize_t r = pread(in, buf, want, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      *step = STEP_READ;
      e = errno;
      break;
    }
    if (r == 0) {
      *step = STEP_CHANGED; /* shorter than the walk saw */
      break;
    }
    ssize_t done = 0;
    while (done < r) {
      ssize_t w = pwrite(out, buf + done, (size_t)(r - done), off + done);
      if (w < 0) {
        if (errno == EINTR) continue;
        *step = STEP_WRITE;
        e = errno;
        break;
      }
      done += w;
    }
    if (e != 0) break;
    off += r;
  }
  if (buf != small) free(buf);
  return e;
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

/* Step 1: open and check the source; on success it->srcfd is open. */
static void open_source(item_t *it) {
  it->step = STEP_OK;
  it->err = 0;
  it->srcfd = -1;
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
  } else if (!S_ISREG(st.st_mode)) {
    it->step = STEP_NOT_REGULAR;
  } else if ((uint64_t)st.st_dev != it->dev || (uint64_t)st.st_ino != it->ino || (int64_t)st.st_size != it->size) {
    it->step = STEP_CHANGED;
  }
  if (it->step != STEP_OK) {
    close(src);
    return;
  }
  if (it->size > 0 && it->size <= READAHEAD_MAX) posix_fadvise(src, 0, (off_t)it->size, POSIX_FADV_WILLNEED);
  else if (it->size > READAHEAD_MAX) posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL); /* a larger readahead window, as cp asks */
  it->srcfd = src;
}

/* Does this kernel and filesystem take O_TMPFILE, and can a nameless file be linked via /proc? */
static int tmpfile_usable = 1;

/* A nameless file in dfd, or -1 (then the temp name is used). */
int ferry_open_nameless(int dfd) {
  if (!__atomic_load_n(&tmpfile_usable, __ATOMIC_RELAXED)) {
    errno = EOPNOTSUPP;
    return -1;
  }
  int fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL || errno == ENOENT)) {
    __atomic_store_n(&tmpfile_usable, 0, __ATOMIC_RELAXED);
  }
  return fd;
}

/*
 * Does linkat(fd, "", AT_EMPTY_PATH) work here (CAP_DAC_READ_SEARCH, or Linux 6.10+,
 * which lets the opener)? -1: not known yet. FERRY_TEST_LINK_VIA_PROC=1 starts with
 * "no", so that the tests reach the /proc way on kernels that never refuse.
 */
static int empty_path_usable = -1;

/*
 * Give the nameless file `fd` the name `name` in dfd; never replaces an existing name.
 * Both ways link the open file itself: by the descriptor (AT_EMPTY_PATH: no lookup,
 * but the kernel may refuse it, ENOENT or EPERM, to a process without
 * CAP_DAC_READ_SEARCH; then never tried again) or through /proc/self/fd/N (a path
 * lookup per file, which the kernel resolves to the open file, not to any name).
 */
int ferry_link_nameless(int fd, int dfd, const char *name) {
  int usable = __atomic_load_n(&empty_path_usable, __ATOMIC_RELAXED);
  if (usable < 0) {
    const char *v = getenv("FERRY_TEST_LINK_VIA_PROC");
    usable = (v != NULL && strcmp(v, "1") == 0) ? 0 : 1;
    __atomic_store_n(&empty_path_usable, usable, __ATOMIC_RELAXED);
  }
  if (usable) {
    if (linkat(fd, "", dfd, name, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM) return -1;
    __atomic_store_n(&empty_path_usable, 0, __ATOMIC_RELAXED);
  }
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  return linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW);
}

/* Create the temp file `temp` in dfd, 0600, never through a symlink; a leftover of an
 * interrupted run (ours by its name) is removed and creation retried once. */
int ferry_create_temp(int dfd, const char *temp) {
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = openat(dfd, temp, flags, 0600);
  if (fd < 0 && errno == EEXIST) {
    unlinkat(dfd, temp, 0);
    fd = openat(dfd, temp, flags, 0600);
  }
  return fd;
}

/*
 * Publish the nameless file fd as `name` in dfd: linkat, which never replaces; a name
 * that exists after all is replaced through `temp` (linked there, then renamed onto
 * `name`). Without a temp name ("") an existing name fails with EEXIST. 0, or -1 with
 * errno and no name of the file left behind.
 */
int ferry_publish_nameless(int fd, int dfd, const char *name, const char *temp) {
  if (ferry_link_nameless(fd, dfd, name) == 0) return 0;
  if (errno != EEXIST || temp[0] == 0) return -1;
  unlinkat(dfd, temp, 0); /* an interrupted run's temp file: ours by its name */
  if (ferry_link_nameless(fd, dfd, temp) == 0 && renameat(dfd, temp, dfd, name) == 0) return 0;
  int e = errno;
  unlinkat(dfd, temp, 0);
  errno = e;
  return -1;
}

/* Steps 2-5 for a source opened by open_source. */
static void copy_item(item_t *it) {
  int src = it->srcfd;
  it->srcfd = -1;
  int dfd = it->dirfd;
  int nameless = 1;
  int tmp = (it->flags & FLAG_NEW) ? ferry_open_nameless(dfd) : -1;
  if (tmp < 0 && it->temp[0] == 0) {
    /* No nameless file here (no O_TMPFILE, or it failed): the caller retries with a temp name. */
    it->step = STEP_NEED_TEMP;
    it->err = (it->flags & FLAG_NEW) ? errno : 0;
    close(src);
    return;
  }
  if (tmp < 0) {
    nameless = 0;
    tmp = ferry_create_temp(dfd, it->temp);
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
  if (nameless) {
    /* Publish by linking; a name that exists after all goes through the temp name. */
    if (step == STEP_OK && ferry_publish_nameless(tmp, dfd, it->name, it->temp) != 0) {
      if (errno == EEXIST && it->temp[0] == 0) {
        step = STEP_NEED_TEMP; /* the caller retries with a temp name */
        e = EEXIST;
      } else {
        step = STEP_RENAME;
        e = errno;
      }
    }
    if (close(tmp) != 0 && step == STEP_OK) {
      step = STEP_WRITE;
      e = errno;
      unlinkat(dfd, it->name, 0); /* it was published: never leave a file whose last write failed */
    }
    it->step = step;
    it->err = e;
    return;
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
  for (size_t i = 0; i < b->n; i++) open_source(&b->items[i]);
  for (size_t i = 0; i < b->n; i++) {
    if (b->items[i].srcfd >= 0) copy_item(&b->items[i]);
  }
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
 *            (temp and name relative to the item's directory fd; temp may be empty
 *            with FLAG_NEW: then a step that needs it fails with STEP_NEED_TEMP);
 *   nums: Float64Array, four per item: size, mode, flags, dirFd (an open directory
 *         of DST, owned by the caller and kept open until the promise settles);
 *   ids: BigUint64Array, three per item: dev, ino, mtime in nanoseconds (as int64).
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
  if (n == 0 || n > MAX_ITEMS || nlen != n * NUMS || ilen != n * IDS || slen > 64u * 1024 * 1024 || slen == 0 ||
      ((const char *)sdata)[slen - 1] != 0) {
    napi_throw_range_error(env, NULL, "copyFiles: 1..1024 items, four numbers and three ids each, NUL-terminated strings");
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
    /* Names inside the directory: never a path that could leave it. An empty temp name
       (no temp name: a new file published by linkat only) needs FLAG_NEW. */
    const double *num = nums + NUMS * i;
    int32_t flags = (int32_t)num[2];
    if ((it->temp[0] == 0 && !(flags & FLAG_NEW)) || it->name[0] == 0 || strchr(it->temp, '/') || strchr(it->name, '/')) goto malformed;
    double size = num[0], dirfd = num[3];
    if (!(size >= 0) || !(dirfd >= 0 && dirfd < 2147483647.0)) goto malformed;
    it->size = (int64_t)size;
    /* mtime in nanoseconds since the epoch, two's complement: floor division, so a time
       before 1970 has a negative second and a nanosecond in [0, 1e9). */
    int64_t ns = (int64_t)ids[IDS * i + 2];
    it->mtime_sec = ns / 1000000000;
    it->mtime_nsec = ns % 1000000000;
    if (it->mtime_nsec < 0) {
      it->mtime_nsec += 1000000000;
      it->mtime_sec -= 1;
    }
    it->mode = (uint32_t)num[1] & 07777;
    it->flags = flags;
    it->dirfd = (int)dirfd;
    it->srcfd = -1;
    it->dev = ids[IDS * i];
    it->ino = ids[IDS * i + 1];
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
