/*
** restore.c -- `rafting restore` (see restore.h).
**
** The backup is mapped read-only and checked whole by rf_snap_restore
** (no store: structure, key count and checksum), then rewritten by
** rf_snap_rehead with the new configuration into a temp file beside its
** final name, synced, renamed and the directories synced; the written
** file is checked again the same way.  Nothing is copied into memory but
** the header: the records go from the mapping to the file.
*/
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rafting/util.h"
#include "rafting/config.h"
#include "rafting/snapshot.h"
#include "restore.h"

typedef struct ropts {
  const char *snapshot, *config, *node, *data;
} ropts;

static void usage(FILE *f) {
  fprintf(f,
    "usage: rafting restore --snapshot FILE --config FILE --node ID [--data DIR]\n"
    "\n"
    "Writes a new data directory for node ID from a backup (GET /snapshot):\n"
    "the backup's state, with node ID as the only voter.  Started with\n"
    "'rafting --config FILE --node ID', the node forms a one-member cluster;\n"
    "add members with POST /cluster/members.\n"
    "\n"
    "  --snapshot FILE  the backup file\n"
    "  --config FILE    the node's config\n"
    "  --node ID        the node that will run on the restored directory\n"
    "  --data DIR       where to write it (default: the config's storage)\n"
    "\n"
    "Exit status: 0 restored, 1 bad snapshot file, 2 usage or config error,\n"
    "3 data directory not empty or not writable.\n");
}

static int fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...) {
  va_list ap;
  fputs("rafting restore: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (code == RF_RESTORE_USAGE)
    fputs("Try 'rafting restore --help'.\n", stderr);
  return code;
}

static int parse(int argc, char **argv, ropts *o) {
  memset(o, 0, sizeof(*o));
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], **slot;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--snapshot") == 0) slot = &o->snapshot;
    else if (strcmp(a, "--config") == 0) slot = &o->config;
    else if (strcmp(a, "--node") == 0) slot = &o->node;
    else if (strcmp(a, "--data") == 0) slot = &o->data;
    else return fail(RF_RESTORE_USAGE, "unknown argument '%s'", a);
    if (i + 1 >= argc) return fail(RF_RESTORE_USAGE, "%s needs a value", a);
    *slot = argv[++i];
  }
  if (!o->snapshot) return fail(RF_RESTORE_USAGE, "--snapshot FILE is required");
  if (!o->config) return fail(RF_RESTORE_USAGE, "--config FILE is required");
  if (!o->node) return fail(RF_RESTORE_USAGE, "--node ID is required");
  return 0;
}

/* The config's storage for id ("%d" -> id) into dir; 0, or -1 for memory. */
static int storage_dir(const rf_config *cfg, uint64_t id, char *dir,
                       size_t cap) {
  size_t k = 0;
  if (strcmp(cfg->storage, "memory") == 0) return -1;
  for (const char *p = cfg->storage; *p && k + 24 < cap; p++) {
    if (p[0] == '%' && p[1] == 'd') {
      k += (size_t)snprintf(dir + k, cap - k, "%llu", (unsigned long long)id);
      p++;
    } else {
      dir[k++] = *p;
    }
  }
  dir[k] = '\0';
  return 0;
}

/* ------------------------------------------------------------ files */

/* mkdir -p; 0 or -errno. */
static int make_dirs(const char *path) {
  char p[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof(p)) return -ENAMETOOLONG;
  memcpy(p, path, n + 1);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0755) < 0 && errno != EEXIST) return -errno;
    *s = '/';
  }
  if (mkdir(p, 0755) < 0 && errno != EEXIST) return -errno;
  return 0;
}

/* 1 if dir exists and holds anything, 0 if absent or empty, -errno. */
static int non_empty(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int found = 0;
  if (d == NULL) return errno == ENOENT ? 0 : -errno;
  while (!found && (e = readdir(d)) != NULL)
    found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return found;
}

static int sync_dir(const char *dir) {
  int rc = 0, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  if (fsync(fd) < 0) rc = -errno;
  close(fd);
  return rc;
}

/* The file at path mapped read-only: *len bytes (a 0-byte file is mapped
** as NULL).  0, or -errno. */
static int map_file(const char *path, const void **p, size_t *len) {
  struct stat st;
  int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
  *p = NULL;
  *len = 0;
  if (fd < 0) return -errno;
  if (fstat(fd, &st) < 0) rc = -errno;
  else if (!S_ISREG(st.st_mode)) rc = -EINVAL;
  else if ((*len = (size_t)st.st_size) > 0) {
    void *m = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) rc = -errno;
    else *p = m;
  }
  close(fd);
  return rc;
}

static int write_out(void *ud, const void *p, size_t len) {
  int fd = *(int *)ud;
  const char *c = p;
  while (len > 0) {
    ssize_t k = write(fd, c, len);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -errno;
    c += k;
    len -= (size_t)k;
  }
  return 0;
}

/* Check the snapshot at path whole: 0 with *m, or an error in err. */
static int check_file(const char *path, rf_snap_meta *m, const void **map,
                      size_t *len, char *err, size_t errlen) {
  char why[512];
  int rc = map_file(path, map, len);
  if (rc < 0) {
    snprintf(err, errlen, "cannot read %s: %s", path,
             rc == -EINVAL ? "not a regular file" : strerror(-rc));
    return rc;
  }
  rc = rf_snap_restore(*map ? *map : "", *len, NULL, m, why, sizeof(why));
  if (rc < 0) snprintf(err, errlen, "%s: %s", path, why);
  return rc;
}

/* ------------------------------------------------------------ restore */

/* Write the snapshot (map, len) with conf into dir/snap: 0 or -errno with
** a message. */
static int write_snapshot(const char *dir, const void *map, size_t len,
                          const raft_conf *conf, rf_snap_meta *out,
                          char *err, size_t errlen) {
  char sdir[4200], tmp[4400], final[4300];
  rf_snap_extra x = {conf, NULL, 0};
  rf_snap_meta m;
  int fd, rc;
  snprintf(sdir, sizeof(sdir), "%s/snap", dir);
  if ((rc = make_dirs(sdir)) < 0) {
    snprintf(err, errlen, "cannot create %s: %s", sdir, strerror(-rc));
    return rc;
  }
  if (rf_snap_head(map, len, len, &m, NULL, 0) < 0) return -EINVAL;
  snprintf(final, sizeof(final), "%s/%016" PRIx64 "-%016" PRIx64 ".snap",
           sdir, m.index, m.term);
  snprintf(tmp, sizeof(tmp), "%s.tmp", final);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = -errno;
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return rc;
  }
  rc = rf_snap_rehead(map, len, &x, write_out, &fd, out);
  if (rc == 0 && fsync(fd) < 0) rc = -errno;
  if (close(fd) < 0 && rc == 0) rc = -errno;
  if (rc == 0 && rename(tmp, final) < 0) rc = -errno;
  if (rc == 0) rc = sync_dir(sdir);
  if (rc == 0) rc = sync_dir(dir);
  if (rc < 0) {
    unlink(tmp);
    snprintf(err, errlen, "cannot write %s: %s", final, strerror(-rc));
  }
  return rc;
}

static int restore(const ropts *o, const rf_config *cfg, uint64_t id,
                   const char *dir) {
  const void *map = NULL, *map2 = NULL;
  size_t len = 0, len2 = 0;
  char err[8500], path[4300];
  rf_snap_meta m, w, back;
  raft_conf conf;
  int rc;
  (void)cfg;
  if (check_file(o->snapshot, &m, &map, &len, err, sizeof(err)) < 0) {
    if (map) munmap((void *)map, len);
    return fail(RF_RESTORE_BADSNAP, "%s", err);
  }
  if ((rc = non_empty(dir)) != 0) {
    munmap((void *)map, len);
    if (rc < 0)
      return fail(RF_RESTORE_BADDIR, "cannot read %s: %s", dir, strerror(-rc));
    return fail(RF_RESTORE_BADDIR, "%s is not empty: restore writes a new "
                "data directory; move the old one away or give --data DIR",
                dir);
  }
  memset(&conf, 0, sizeof(conf));
  conf.voters[conf.n_voters++] = id;
  rc = write_snapshot(dir, map, len, &conf, &w, err, sizeof(err));
  munmap((void *)map, len);
  if (rc < 0) return fail(RF_RESTORE_BADDIR, "%s", err);
  /* read what was written back, as the node will */
  snprintf(path, sizeof(path), "%s/snap/%016" PRIx64 "-%016" PRIx64 ".snap",
           dir, w.index, w.term);
  rc = check_file(path, &back, &map2, &len2, err, sizeof(err));
  if (map2) munmap((void *)map2, len2);
  if (rc < 0 || back.nkeys != m.nkeys || !back.has_conf ||
      back.conf.n_voters != 1 || back.conf.voters[0] != id)
    return fail(RF_RESTORE_BADDIR, "the written snapshot does not check: %s",
                rc < 0 ? err : "another configuration or key count");
  printf("restored %s into %s: index %" PRIu64 ", term %" PRIu64 ", %" PRIu64
         " keys%s; node %" PRIu64 " is the only voter\n", o->snapshot, dir,
         m.index, m.term, m.nkeys, m.has_conf ? "" : " (a version 1 file)",
         id);
  printf("start it with: rafting --config %s --node %" PRIu64 "\n", o->config,
         id);
  return RF_RESTORE_OK;
}

int rf_restore_main(int argc, char **argv) {
  char err[1024], dir[4096];
  rf_config cfg;
  uint64_t id;
  ropts o;
  int rc, has_dir;
  if ((rc = parse(argc, argv, &o)) != 0) return rc;
  if ((id = rf_parse_id(o.node)) == 0)
    return fail(RF_RESTORE_USAGE, "--node wants a positive integer id, not "
                "'%s'", o.node);
  if (rf_config_load(o.config, &cfg, err, sizeof(err)) < 0)
    return fail(RF_RESTORE_USAGE, "%s", err);
  if (rf_config_node(&cfg, id) == NULL) {
    rf_config_free(&cfg);
    return fail(RF_RESTORE_USAGE, "%s: no node with id %" PRIu64 " in nodes",
                o.config, id);
  }
  has_dir = storage_dir(&cfg, id, dir, sizeof(dir)) == 0;
  if (!has_dir) {
    rf_config_free(&cfg);
    return fail(RF_RESTORE_USAGE, "%s: storage is \"memory\": a restored "
                "node needs a data directory (set storage = \"DIR\")",
                o.config);
  }
  if (o.data && strcmp(o.data, dir) != 0)
    printf("note: %s keeps node %" PRIu64 "'s data in %s; start the node "
           "with a config whose storage is %s\n", o.config, id, dir, o.data);
  rc = restore(&o, &cfg, id, o.data ? o.data : dir);
  rf_config_free(&cfg);
  return rc;
}
