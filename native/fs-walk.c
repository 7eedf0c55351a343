/*
 * ferry's directory listing for the walk: one directory per call, off the main thread.
 *
 * What it is for: the walk (src/fs/walk.ts) needs, for every entry of a directory,
 * its name and its lstat (kind, mode, size, mtime in nanoseconds, device, inode,
 * link count, blocks) and, for a symlink, its target. Made from JavaScript that is
 * a readdir plus one lstat (and one readlink) per entry, each building a Stats
 * object, through /proc/self/fd/N/name so that the names resolve inside the
 * directory that was checked; on 100k small files the walk then costs more CPU than
 * the kernel's part of the copy. Here one N-API async work lists a directory with
 * getdents64 and stats every entry with fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)
 * (and readlinkat) relative to the directory fd the walk opened and checked, on a
 * pool thread, and returns packed arrays.
 *
 * It decides nothing: no exclusion, no validation of names or targets, no skipping
 * beyond "." and "..". TypeScript applies exactly the rules it applies to its own
 * listing. Names are returned as raw bytes, sorted by byte value like libuv's
 * scandir (the order the TypeScript fallback sees), so both paths emit entries in
 * the same order.
 *
 * listDir(fd, peerFd = -1) -> Promise<[names: Buffer, nums: Float64Array, big: BigInt64Array,
 *                                      peerNums?: Float64Array, peerBig?: BigInt64Array]>
 *   for entry i: nums[10i..10i+9] = name offset, name length, target length (the
 *   target's bytes follow the name's; -1: none), st_mode, size, nlink, blocks,
 *   errno of its fstatat/readlinkat (0: ok; then the stat fields are 0), uid, gid;
 *   big[3i..3i+2] = mtime in ns, device, inode. A failure to list the directory
 *   itself rejects with an Error whose `errno` is set.
 *   With a peer directory fd (the local copy's DST directory of the same path), each
 *   name is also fstatat'ed there, in the same call: peerNums/peerBig hold those
 *   records in statAt's layout (below), entry i at the same i. A failure there is
 *   that record's errno, never the call's.
 *
 * statAt(fd, names, count) -> Promise<[nums, big]>: the same records for names the
 *   caller gives (the receiver's quick check against DST),
 *   fstatat relative to the verified directory fd, no listing, no readlink.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <node_api.h>

#include "fs-walk.h"

#define NUMS 10
#define BIGS 3
/** Entries one directory may have here (bounds memory; the TypeScript walk has no such limit, but 16M is far past any real directory). */
#define MAX_ENTRIES (16u << 20)

struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int peer_fd;
  int err;
  /* Names as read, then sorted offsets into `pool`. */
  char *pool;
  size_t pool_len, pool_cap;
  uint32_t *offs;
  size_t n, cap;
  /* Results. */
  char *out;
  size_t out_len;
  double *nums;
  int64_t *big;
  double *peer_nums;
  int64_t *peer_big;
} list_t;

static int grow(void **p, size_t *cap, size_t need, size_t unit) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * unit);
  if (!q) return -1;
  *p = q;
  *cap = c;
  return 0;
}

/* Byte order of the names (qsort_r's argument is the name pool). */
static int by_name(const void *a, const void *b, void *pool) {
  return strcmp((const char *)pool + *(const uint32_t *)a, (const char *)pool + *(const uint32_t *)b);
}

/* One record's stat fields (listDir and statAt share the layout). */
static void put_stat(double *num, int64_t *big, const struct stat *st) {
  num[3] = st->st_mode;
  num[4] = (double)st->st_size;
  num[5] = (double)st->st_nlink;
  num[6] = (double)st->st_blocks;
  num[8] = (double)st->st_uid;
  num[9] = (double)st->st_gid;
  big[0] = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  big[1] = (int64_t)st->st_dev;
  big[2] = (int64_t)st->st_ino;
}

/* One statAt record: `name` lstat'ed relative to `dirfd`, or its errno. */
static void stat_one(int dirfd, const char *name, double *num, int64_t *big) {
  struct stat st;
  num[2] = -1;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) num[7] = errno;
  else put_stat(num, big, &st);
}

static void execute(napi_env env, void *data) {
  (void)env;
  list_t *l = data;
  char buf[32768];
  /* The fd's position belongs to this call: list from the start. */
  if (lseek(l->fd, 0, SEEK_SET) < 0) {
    l->err = errno;
    return;
  }
  for (;;) {
    long r = syscall(SYS_getdents64, l->fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      l->err = errno;
      return;
    }
    if (r == 0) break;
    for (long off = 0; off < r;) {
      struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
      off += d->d_reclen;
      const char *name = d->d_name;
      if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
      size_t len = strlen(name) + 1;
      if (l->n >= MAX_ENTRIES || l->pool_len + len > UINT32_MAX) {
        l->err = EOVERFLOW;
        return;
      }
      if (grow((void **)&l->pool, &l->pool_cap, l->pool_len + len, 1) || grow((void **)&l->offs, &l->cap, l->n + 1, sizeof *l->offs)) {
        l->err = ENOMEM;
        return;
      }
      memcpy(l->pool + l->pool_len, name, len);
      l->offs[l->n++] = (uint32_t)l->pool_len;
      l->pool_len += len;
    }
  }
  if (l->n > 1) qsort_r(l->offs, l->n, sizeof *l->offs, by_name, l->pool);
  l->nums = calloc(l->n ? l->n * NUMS : 1, sizeof(double));
  l->big = calloc(l->n ? l->n * BIGS : 1, sizeof(int64_t));
  if (l->peer_fd >= 0) {
    l->peer_nums = calloc(l->n ? l->n * NUMS : 1, sizeof(double));
    l->peer_big = calloc(l->n ? l->n * BIGS : 1, sizeof(int64_t));
    if (!l->peer_nums || !l->peer_big) {
      l->err = ENOMEM;
      return;
    }
  }
  /* Names and targets: at most the names plus PATH_MAX per symlink, grown as needed. */
  size_t out_cap = l->pool_len + 1;
  l->out = malloc(out_cap);
  if (!l->nums || !l->big || !l->out) {
    l->err = ENOMEM;
    return;
  }
  char target[4097];
  for (size_t i = 0; i < l->n; i++) {
    const char *name = l->pool + l->offs[i];
    size_t len = strlen(name);
    double *num = l->nums + NUMS * i;
    int64_t *big = l->big + BIGS * i;
    ssize_t tlen = -1;
    struct stat st;
    int e = 0;
    if (fstatat(l->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      e = errno;
    } else if (S_ISLNK(st.st_mode)) {
      tlen = readlinkat(l->fd, name, target, sizeof target - 1);
      if (tlen < 0) {
        e = errno;
        tlen = -1;
      } else if ((size_t)tlen >= sizeof target - 1) {
        e = ENAMETOOLONG;
        tlen = -1;
      }
    }
    size_t need = l->out_len + len + (tlen > 0 ? (size_t)tlen : 0);
    if (grow((void **)&l->out, &out_cap, need + 1, 1)) {
      l->err = ENOMEM;
      return;
    }
    num[0] = (double)l->out_len;
    num[1] = (double)len;
    memcpy(l->out + l->out_len, name, len);
    l->out_len += len;
    num[2] = (double)tlen;
    if (tlen > 0) {
      memcpy(l->out + l->out_len, target, (size_t)tlen);
      l->out_len += (size_t)tlen;
    }
    num[7] = e;
    if (e == 0) put_stat(num, big, &st);
    if (l->peer_fd >= 0) stat_one(l->peer_fd, name, l->peer_nums + NUMS * i, l->peer_big + BIGS * i);
  }
}

/* res[at], res[at + 1] = copies of n records (a Float64Array and a BigInt64Array); 0 on failure. */
static int put_records(napi_env env, napi_value res, uint32_t at, size_t n, const double *nums, const int64_t *big) {
  napi_value a, b, ab;
  void *raw;
  if (napi_create_arraybuffer(env, n * NUMS * sizeof(double), &raw, &ab) != napi_ok) return 0;
  memcpy(raw, nums, n * NUMS * sizeof(double));
  if (napi_create_typedarray(env, napi_float64_array, n * NUMS, ab, 0, &a) != napi_ok) return 0;
  if (napi_create_arraybuffer(env, n * BIGS * sizeof(int64_t), &raw, &ab) != napi_ok) return 0;
  memcpy(raw, big, n * BIGS * sizeof(int64_t));
  if (napi_create_typedarray(env, napi_bigint64_array, n * BIGS, ab, 0, &b) != napi_ok) return 0;
  return napi_set_element(env, res, at, a) == napi_ok && napi_set_element(env, res, at + 1, b) == napi_ok;
}

static void complete(napi_env env, napi_status status, void *data) {
  list_t *l = data;
  napi_value res = NULL, names;
  if (status == napi_ok && l->err == 0) {
    size_t n = l->n;
    if (napi_create_buffer_copy(env, l->out_len, l->out_len ? l->out : "", NULL, &names) == napi_ok &&
        napi_create_array_with_length(env, l->peer_nums ? 5 : 3, &res) == napi_ok &&
        napi_set_element(env, res, 0, names) == napi_ok && put_records(env, res, 1, n, l->nums, l->big) &&
        (l->peer_nums == NULL || put_records(env, res, 3, n, l->peer_nums, l->peer_big))) {
      napi_resolve_deferred(env, l->deferred, res);
      res = NULL;
    } else {
      l->err = ENOMEM;
    }
  } else if (l->err == 0) {
    l->err = EIO;
  }
  if (l->err != 0) {
    napi_value msg, err, code;
    napi_create_string_utf8(env, strerror(l->err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_create_int32(env, l->err, &code);
    napi_set_named_property(env, err, "errno", code);
    napi_reject_deferred(env, l->deferred, err);
  }
  napi_delete_async_work(env, l->work);
  free(l->pool);
  free(l->offs);
  free(l->out);
  free(l->nums);
  free(l->big);
  free(l->peer_nums);
  free(l->peer_big);
  free(l);
}

static napi_value list_dir(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  int32_t fd, peer_fd = -1;
  napi_valuetype t = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      (argc > 1 && (napi_typeof(env, argv[1], &t) != napi_ok ||
                    (t != napi_undefined && napi_get_value_int32(env, argv[1], &peer_fd) != napi_ok)))) {
    napi_throw_type_error(env, NULL, "listDir(fd: number, peerFd?: number)");
    return NULL;
  }
  list_t *l = calloc(1, sizeof *l);
  if (!l) {
    napi_throw_error(env, NULL, "listDir: out of memory");
    return NULL;
  }
  l->fd = fd;
  l->peer_fd = peer_fd < 0 ? -1 : peer_fd;
  if (napi_create_promise(env, &l->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "ferry.listDir", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, l, &l->work) != napi_ok ||
      napi_queue_async_work(env, l->work) != napi_ok) {
    free(l);
    napi_throw_error(env, NULL, "listDir: could not queue the call");
    return NULL;
  }
  return promise;
}

/*
 * statAt(fd, names, count) -> Promise<[nums: Float64Array, big: BigInt64Array]>
 *
 * The quick check's half of the walk: `count` names (NUL-terminated, back to back in
 * `names`) lstat'ed with fstatat(fd, name, AT_SYMLINK_NOFOLLOW) relative to a
 * directory descriptor the caller verified, on a pool thread. One call per directory
 * of a manifest batch replaces a Stats object and a /proc/self/fd/N/name lookup per
 * file. Results use listDir's record layout (name fields and the target length are 0
 * / -1: nothing is read or returned but the stat), so one decoder serves both; a name
 * that does not exist has errno ENOENT in nums[10i+7]. It decides nothing.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref names_ref;
  int fd;
  const char *names;
  size_t names_len;
  size_t n;
  int err;
  double *nums;
  int64_t *big;
} stat_t;

static void stat_execute(napi_env env, void *data) {
  (void)env;
  stat_t *s = data;
  const char *p = s->names;
  const char *end = s->names + s->names_len;
  for (size_t i = 0; i < s->n; i++) {
    const char *z = p < end ? memchr(p, 0, (size_t)(end - p)) : NULL;
    double *num = s->nums + NUMS * i;
    if (z == NULL) {
      /* Fewer names than count: the rest fail with EINVAL. */
      num[2] = -1;
      num[7] = EINVAL;
      continue;
    }
    stat_one(s->fd, p, num, s->big + BIGS * i);
    p = z + 1;
  }
}

static void stat_complete(napi_env env, napi_status status, void *data) {
  stat_t *s = data;
  napi_value res;
  if (status == napi_ok && napi_create_array_with_length(env, 2, &res) == napi_ok && put_records(env, res, 0, s->n, s->nums, s->big)) {
    napi_resolve_deferred(env, s->deferred, res);
  } else {
    napi_value msg, err, code;
    napi_create_string_utf8(env, strerror(ENOMEM), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_create_int32(env, ENOMEM, &code);
    napi_set_named_property(env, err, "errno", code);
    napi_reject_deferred(env, s->deferred, err);
  }
  napi_delete_reference(env, s->names_ref);
  napi_delete_async_work(env, s->work);
  free(s->nums);
  free(s->big);
  free(s);
}

static napi_value stat_at(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], promise, name;
  int32_t fd;
  uint32_t count;
  void *names;
  size_t names_len;
  bool is_buf = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, argv[1], &names, &names_len) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &count) != napi_ok || count > MAX_ENTRIES) {
    napi_throw_type_error(env, NULL, "statAt(fd: number, names: Buffer, count: number)");
    return NULL;
  }
  stat_t *s = calloc(1, sizeof *s);
  if (s) {
    s->nums = calloc(count ? (size_t)count * NUMS : 1, sizeof(double));
    s->big = calloc(count ? (size_t)count * BIGS : 1, sizeof(int64_t));
  }
  if (!s || !s->nums || !s->big) {
    if (s) {
      free(s->nums);
      free(s->big);
    }
    free(s);
    napi_throw_error(env, NULL, "statAt: out of memory");
    return NULL;
  }
  s->fd = fd;
  s->names = names;
  s->names_len = names_len;
  s->n = count;
  /* The names buffer stays alive (referenced) until the call completes. */
  if (napi_create_reference(env, argv[1], 1, &s->names_ref) != napi_ok ||
      napi_create_promise(env, &s->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "ferry.statAt", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, stat_execute, stat_complete, s, &s->work) != napi_ok ||
      napi_queue_async_work(env, s->work) != napi_ok) {
    free(s->nums);
    free(s->big);
    free(s);
    napi_throw_error(env, NULL, "statAt: could not queue the call");
    return NULL;
  }
  return promise;
}

napi_status ferry_fs_walk_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listDir", NULL, list_dir, NULL, NULL, NULL, napi_default, NULL},
      {"statAt", NULL, stat_at, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
