/*
** members.c -- the address book (see rafting/members.h): lookups, the
** binary encoding that rides in CONF entries and snapshots, and the
** DIR/members file.  Nothing here allocates; the caller owns the book.
*/
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "rafting/bytes.h"
#include "rafting/members.h"
#include "rafting/util.h"

#define ENC_VERSION 1
#define FILE_HEAD "rafting-members 1"

void rf_members_init(rf_members *b) { memset(b, 0, sizeof(*b)); }

static rf_member *find(rf_members *b, uint64_t id) {
  for (size_t i = 0; i < b->n; i++)
    if (b->m[i].id == id) return &b->m[i];
  return NULL;
}

const rf_member *rf_members_get(const rf_members *b, uint64_t id) {
  return find((rf_members *)b, id);
}

static int host_ok(const char *host, int port) {
  struct sockaddr_storage ss;
  return memchr(host, '\0', RF_MEMBERS_HOST) != NULL && host[0] &&
         port > 0 && port <= 65535 && rf_addr_resolve(host, port, &ss) == 0;
}

static int member_ok(const rf_member *m) {
  return m->id != RAFT_NONE && m->id < RAFT_TERM_LIMIT &&
         host_ok(m->peer_host, m->peer_port) &&
         host_ok(m->http_host, m->http_port);
}

static int same(const rf_member *a, const rf_member *b) {
  return a->peer_port == b->peer_port && a->http_port == b->http_port &&
         strcmp(a->peer_host, b->peer_host) == 0 &&
         strcmp(a->http_host, b->http_host) == 0;
}

static int is_boot(const rf_members *b, uint64_t id) {
  for (size_t i = 0; i < b->n_boot; i++)
    if (b->boot[i] == id) return 1;
  return 0;
}

static void cut(rf_members *b, size_t i) {
  memmove(&b->m[i], &b->m[i + 1], (b->n - i - 1) * sizeof(b->m[0]));
  b->n--;
}

/* The book is kept oldest set first.  Every CONF entry sets the address
** of each member of its configuration again, so with room for twice the
** members a cluster may have, the oldest entry is a node that left long
** ago: it makes room, bootstrap voters last. */
static void evict(rf_members *b) {
  size_t i = 0;
  while (i < b->n && is_boot(b, b->m[i].id)) i++;
  cut(b, i < b->n ? i : 0);
}

int rf_members_set(rf_members *b, const rf_member *m) {
  rf_member e = *m; /* m may point into the book */
  rf_member *old = find(b, e.id);
  int changed;
  if (!member_ok(&e)) return RF_EINVAL;
  /* a move is a change too: the stored file keeps the order eviction uses */
  changed = old == NULL || !same(old, &e) || old != &b->m[b->n - 1];
  if (old != NULL) cut(b, (size_t)(old - b->m));
  else if (b->n == RF_MEMBERS_MAX) evict(b);
  b->m[b->n++] = e;
  return changed;
}

void rf_members_remove(rf_members *b, uint64_t id) {
  rf_member *e = find(b, id);
  if (e != NULL) cut(b, (size_t)(e - b->m));
}

int rf_member_parse(rf_member *m, uint64_t id, const char *peer,
                    const char *http, char *why, size_t whylen) {
  memset(m, 0, sizeof(*m));
  m->id = id;
  if (id == RAFT_NONE || id >= RAFT_TERM_LIMIT) {
    snprintf(why, whylen, "bad node id %" PRIu64, id);
    return RF_EINVAL;
  }
  if (rf_addr_split(peer, m->peer_host, sizeof(m->peer_host), &m->peer_port,
                    why, whylen) < 0 ||
      rf_addr_split(http, m->http_host, sizeof(m->http_host), &m->http_port,
                    why, whylen) < 0)
    return RF_EINVAL;
  return 0;
}

static int host_eq(const char *a, const char *b) {
  struct sockaddr_storage x, y;
  if (rf_addr_resolve(a, 1, &x) < 0 || rf_addr_resolve(b, 1, &y) < 0)
    return strcmp(a, b) == 0;
  return x.ss_family == y.ss_family &&
         memcmp(&x, &y, sizeof(x)) == 0; /* "localhost" is 127.0.0.1 */
}

uint64_t rf_members_clash(const rf_members *b, const rf_member *m) {
  for (size_t i = 0; i < b->n; i++) {
    const rf_member *e = &b->m[i];
    if (e->id == m->id) continue;
    if ((e->peer_port == m->peer_port && host_eq(e->peer_host, m->peer_host)) ||
        (e->http_port == m->http_port && host_eq(e->http_host, m->http_host)))
      return e->id;
  }
  return RAFT_NONE;
}

/* ------------------------------------------------------------ encoding */

static void put_addr(rf_buf *out, const char *host, int port) {
  uint8_t h[3];
  size_t len = strlen(host);
  h[0] = (uint8_t)len;
  rf_buf_add(out, h, 1);
  rf_buf_add(out, host, len);
  h[1] = (uint8_t)(port & 0xff);
  h[2] = (uint8_t)(port >> 8);
  rf_buf_add(out, h + 1, 2);
}

int rf_members_encode(const rf_members *b, const raft_conf *conf,
                      rf_buf *out) {
  const rf_member *list[2 * RAFT_MAX_NODES];
  size_t n = 0, i;
  uint8_t head[2], id[8];
  for (i = 0; i < conf->n_voters + conf->n_learners; i++) {
    uint64_t m = i < conf->n_voters ? conf->voters[i]
                                    : conf->learners[i - conf->n_voters];
    const rf_member *e = rf_members_get(b, m);
    if (e != NULL) list[n++] = e;
  }
  head[0] = ENC_VERSION;
  head[1] = (uint8_t)n;
  rf_buf_add(out, head, 2);
  for (i = 0; i < n; i++) {
    rf_put_le64(id, list[i]->id);
    rf_buf_add(out, id, 8);
    put_addr(out, list[i]->peer_host, list[i]->peer_port);
    put_addr(out, list[i]->http_host, list[i]->http_port);
  }
  return out->oom ? RF_ENOMEM : 0;
}

static int get_addr(const uint8_t **p, const uint8_t *end, char *host,
                    int *port) {
  size_t len;
  if (end - *p < 1) return RF_EINVAL;
  len = **p;
  if (len == 0 || len >= RF_MEMBERS_HOST || (size_t)(end - *p) < 1 + len + 2)
    return RF_EINVAL;
  memcpy(host, *p + 1, len);
  host[len] = '\0';
  *port = (*p)[1 + len] | (*p)[2 + len] << 8;
  *p += 1 + len + 2;
  return strlen(host) == len ? 0 : RF_EINVAL; /* no NUL inside */
}

int rf_members_decode(const uint8_t *p, size_t len, rf_member *out,
                      size_t cap, size_t *n) {
  const uint8_t *end = p + len;
  size_t count, i;
  *n = 0;
  if (p == NULL || len < 2 || p[0] != ENC_VERSION) return RF_EINVAL;
  count = p[1];
  p += 2;
  if (count > cap) return RF_EINVAL;
  for (i = 0; i < count; i++) {
    rf_member *m = &out[i];
    memset(m, 0, sizeof(*m));
    if (end - p < 8) return RF_EINVAL;
    m->id = rf_get_le64(p);
    p += 8;
    if (get_addr(&p, end, m->peer_host, &m->peer_port) < 0 ||
        get_addr(&p, end, m->http_host, &m->http_port) < 0 || !member_ok(m))
      return RF_EINVAL;
  }
  if (p != end) return RF_EINVAL;
  *n = count;
  return 0;
}

static int same_book(const rf_members *a, const rf_members *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->m[i].id != b->m[i].id || !same(&a->m[i], &b->m[i])) return 0;
  return 1;
}

int rf_members_merge(rf_members *b, const uint8_t *p, size_t len) {
  rf_member got[RF_MEMBERS_MAX];
  rf_members next = *b;
  size_t n, i;
  int rc, changed = 0;
  if ((rc = rf_members_decode(p, len, got, RF_MEMBERS_MAX, &n)) < 0) return rc;
  for (i = 0; i < n; i++) {
    if ((rc = rf_members_set(&next, &got[i])) < 0) return rc;
    changed += rc;
  }
  if (changed && same_book(b, &next)) changed = 0; /* the same order again */
  *b = next;
  return changed;
}

/* ------------------------------------------------------------ the file */

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static void format_file(const rf_members *b, rf_buf *out) {
  char peer[RF_ADDR_MAX], http[RF_ADDR_MAX];
  rf_buf_str(out, FILE_HEAD "\n# written by rafting: the bootstrap voters of "
                  "this data directory and the\n# addresses it last knew "
                  "(docs/membership.md); do not edit\nbootstrap");
  for (size_t i = 0; i < b->n_boot; i++)
    rf_buf_printf(out, " %" PRIu64, b->boot[i]);
  rf_buf_str(out, "\n");
  for (size_t i = 0; i < b->n; i++) {
    const rf_member *m = &b->m[i];
    rf_addr_format(peer, sizeof(peer), m->peer_host, m->peer_port);
    rf_addr_format(http, sizeof(http), m->http_host, m->http_port);
    rf_buf_printf(out, "member %" PRIu64 " %s %s\n", m->id, peer, http);
  }
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY), rc = 0;
  if (fd < 0 || fsync(fd) < 0) rc = -errno;
  if (fd >= 0) close(fd);
  return rc;
}

int rf_members_store(const rf_members *b, const char *dir, char *err,
                     size_t errlen) {
  char path[4200], tmp[4210];
  rf_buf text;
  int fd, rc;
  snprintf(path, sizeof(path), "%s/" RF_MEMBERS_FILE, dir);
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  rf_buf_init(&text);
  format_file(b, &text);
  if (text.oom) return RF_ENOMEM;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  rc = fd < 0 ? -errno : write_all(fd, text.p, text.n);
  if (rc == 0 && fsync(fd) < 0) rc = -errno;
  if (fd >= 0 && close(fd) < 0 && rc == 0) rc = -errno;
  if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
  if (rc == 0) rc = fsync_dir(dir);
  rf_buf_free(&text);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    if (fd >= 0) unlink(tmp);
  }
  return rc;
}

static int parse_boot(rf_members *b, char *rest) {
  char *tok, *save = NULL, *end;
  for (tok = strtok_r(rest, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    unsigned long long v = strtoull(tok, &end, 10);
    if (*end || v == 0 || v >= RAFT_TERM_LIMIT || b->n_boot == RAFT_MAX_NODES)
      return -1;
    b->boot[b->n_boot++] = (uint64_t)v;
  }
  return 0;
}

static int parse_line(rf_members *b, char *line) {
  char peer[RF_ADDR_MAX], http[RF_ADDR_MAX], why[128];
  unsigned long long id;
  rf_member m;
  int used = 0;
  if (line[0] == '#' || line[0] == '\0') return 0;
  if (strncmp(line, "bootstrap", 9) == 0 && (line[9] == ' ' || !line[9]))
    return parse_boot(b, line + 9);
  if (sscanf(line, "member %llu %255s %255s%n", &id, peer, http, &used) != 3 ||
      line[used] != '\0' ||
      rf_member_parse(&m, (uint64_t)id, peer, http, why, sizeof(why)) < 0)
    return -1;
  return rf_members_set(b, &m) < 0 ? -1 : 0;
}

static int parse_file(rf_members *b, char *text, char *err, size_t errlen,
                      const char *path) {
  char *line = text, *nl;
  int no = 1;
  if (strncmp(text, FILE_HEAD "\n", sizeof(FILE_HEAD)) != 0) {
    snprintf(err, errlen, "%s: not a rafting members file", path);
    return RF_ECORRUPT;
  }
  for (line = text + sizeof(FILE_HEAD); *line; line = nl + 1) {
    no++;
    if ((nl = strchr(line, '\n')) == NULL) {
      snprintf(err, errlen, "%s:%d: the last line is cut short", path, no);
      return RF_ECORRUPT;
    }
    *nl = '\0';
    if (parse_line(b, line) < 0) {
      snprintf(err, errlen, "%s:%d: malformed line", path, no);
      return RF_ECORRUPT;
    }
  }
  return 0;
}

int rf_members_load(rf_members *b, const char *dir, char *err,
                    size_t errlen) {
  char path[4200], text[65536];
  ssize_t got;
  size_t len = 0;
  int fd, rc;
  rf_members_init(b);
  snprintf(path, sizeof(path), "%s/" RF_MEMBERS_FILE, dir);
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    if (errno == ENOENT) return RF_ENONE;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -errno;
  }
  while ((got = read(fd, text + len, sizeof(text) - 1 - len)) > 0 ||
         (got < 0 && errno == EINTR))
    if (got > 0) len += (size_t)got;
  rc = got < 0 ? -errno : 0;
  close(fd);
  if (rc < 0 || len == sizeof(text) - 1) {
    snprintf(err, errlen, "%s: %s", path, rc < 0 ? strerror(-rc) : "too long");
    return rc < 0 ? rc : RF_ECORRUPT;
  }
  text[len] = '\0';
  if (memchr(text, '\0', len) != NULL) {
    snprintf(err, errlen, "%s: not a rafting members file", path);
    return RF_ECORRUPT;
  }
  rc = parse_file(b, text, err, errlen, path);
  if (rc < 0) rf_members_init(b);
  return rc;
}
