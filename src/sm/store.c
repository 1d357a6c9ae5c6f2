/*
** store.c -- ordered binary-safe key/value store (see rafting/store.h).
**
** One malloc per node holds the node, its key and room for cap bytes of
** value after the key (at least a pointer's worth).  A value of up to cap
** bytes lives there; a longer one gets a block of its own, whose pointer
** is kept in that room.  A node never moves once in the tree: a put that
** does not fit allocates a value block instead.  With no key or value
** pointer and 32-bit lengths a node costs 45 bytes plus malloc's 8 (issue
** 13: 208 -> 176 bytes of heap for a 16-byte key and a 100-byte value).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rafting/store.h"

#include <bsd/sys/tree.h>

typedef struct node {
  RB_ENTRY(node) rb;
  uint32_t klen, vlen;
  uint32_t cap;           /* value bytes data holds after the key */
  unsigned char dead;
  unsigned char data[];   /* key; value if vlen <= cap, else its pointer */
} node;

#define MINCAP sizeof(void *)
#define LEN_MAX UINT32_MAX

static const unsigned char *nkey(const node *n) { return n->data; }

static int outside(const node *n) { return n->vlen > n->cap; }

static unsigned char *nval(const node *n) {
  unsigned char *v;
  if (!outside(n)) return (unsigned char *)n->data + n->klen;
  memcpy(&v, n->data + n->klen, sizeof(v));
  return v;
}

RB_HEAD(tree, node);

struct rf_store {
  struct tree t;
  size_t count;
  uint64_t bytes;
};

int rf_store_keycmp(const void *a, size_t alen, const void *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c != 0) return c;
  return alen < blen ? -1 : alen > blen;
}

static int nodecmp(const node *a, const node *b) {
  return rf_store_keycmp(a->data, a->klen, b->data, b->klen);
}

/* libbsd leaves __unused undefined (it clashes with Linux headers), but
** RB_GENERATE_STATIC needs it: define it for this expansion only. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#define UNDEF_UNUSED
#endif
RB_GENERATE_STATIC(tree, node, rb, nodecmp)
#ifdef UNDEF_UNUSED
#undef __unused
#endif

rf_store *rf_store_new(void) {
  rf_store *s = calloc(1, sizeof(*s));
  if (s) RB_INIT(&s->t);
  return s;
}

/* Drop the value (a separate block, if any); the node holds none. */
static void freeval(node *n) {
  if (outside(n)) free(nval(n));
  n->vlen = 0;
}

static void freenode(node *n) {
  freeval(n);
  free(n);
}

void rf_store_clear(rf_store *s) {
  node *n, *next;
  RB_FOREACH_SAFE(n, tree, &s->t, next) {
    RB_REMOVE(tree, &s->t, n);
    freenode(n);
  }
  s->count = 0;
  s->bytes = 0;
}

void rf_store_free(rf_store *s) {
  if (s == NULL) return;
  rf_store_clear(s);
  free(s);
}

/* The node of key, or with ge the first one above it, or NULL (a node has
** no key pointer, so no probe node for RB_FIND: the descent is here). */
static node *descend(const rf_store *s, const void *key, size_t klen, int ge) {
  node *n = RB_ROOT(&s->t), *above = NULL;
  while (n != NULL) {
    int c = rf_store_keycmp(key, klen, n->data, n->klen);
    if (c == 0) return n;
    if (c < 0) {
      above = n;
      n = RB_LEFT(n, rb);
    } else {
      n = RB_RIGHT(n, rb);
    }
  }
  return ge ? above : NULL;
}

static node *find(const rf_store *s, const void *key, size_t klen) {
  return descend(s, key, klen, 0);
}

int rf_store_get(const rf_store *s, const void *key, size_t klen,
                 const void **val, size_t *vlen) {
  node *n = find(s, key, klen);
  if (n == NULL || n->dead) return 0;
  *val = nval(n);
  *vlen = n->vlen;
  return 1;
}

/* Bookkeeping for a node entering (sign 1) or leaving (-1) the live set. */
static void account(rf_store *s, const node *n, int sign) {
  if (n->dead) return;
  if (sign > 0) {
    s->count++;
    s->bytes += n->klen + n->vlen;
  } else {
    s->count--;
    s->bytes -= n->klen + n->vlen;
  }
}

/* A node for key holding the value (dead: none, a placeholder). */
static node *newnode(const void *key, size_t klen, const void *val,
                     size_t vlen, int dead) {
  size_t cap = vlen > MINCAP ? vlen : MINCAP;
  node *n;
  if (klen > LEN_MAX || vlen > LEN_MAX) return NULL;
  if ((n = malloc(offsetof(node, data) + klen + cap)) == NULL) return NULL;
  memset(n, 0, offsetof(node, data));
  memcpy(n->data, key, klen);
  n->klen = (uint32_t)klen;
  n->cap = (uint32_t)cap;
  n->dead = (unsigned char)dead;
  if (!dead && vlen > 0) memcpy(n->data + klen, val, vlen);
  n->vlen = dead ? 0 : (uint32_t)vlen;
  return n;
}

/* Find or insert the node of key (a fresh one is a dead placeholder). */
static node *slot(rf_store *s, const void *key, size_t klen) {
  node *n = find(s, key, klen);
  if (n != NULL) return n;
  if ((n = newnode(key, klen, NULL, 0, 1)) == NULL) return NULL;
  RB_INSERT(tree, &s->t, n);
  return n;
}

/* Give node n the value: in its room when it fits, else in a block of its
** own (allocated before anything changes, so a failure changes nothing). */
static int setval(node *n, const void *val, size_t vlen) {
  unsigned char *copy = NULL;
  if (vlen > LEN_MAX) return -1;
  if (vlen > n->cap) {
    if ((copy = malloc(vlen)) == NULL) return -1;
    memcpy(copy, val, vlen);
  }
  freeval(n);
  if (copy != NULL) memcpy(n->data + n->klen, &copy, sizeof(copy));
  else if (vlen > 0) memcpy(n->data + n->klen, val, vlen);
  n->vlen = (uint32_t)vlen;
  return 0;
}

int rf_store_put(rf_store *s, const void *key, size_t klen,
                 const void *val, size_t vlen) {
  node *n = find(s, key, klen);
  if (n == NULL) {
    if ((n = newnode(key, klen, val, vlen, 0)) == NULL) return -1;
    RB_INSERT(tree, &s->t, n);
    account(s, n, 1);
    return 0;
  }
  account(s, n, -1);
  if (setval(n, val, vlen) < 0) {
    account(s, n, 1);
    return -1;
  }
  n->dead = 0;
  account(s, n, 1);
  return 0;
}

int rf_store_delete(rf_store *s, const void *key, size_t klen) {
  node *n = find(s, key, klen);
  int live;
  if (n == NULL) return 0;
  live = !n->dead;
  account(s, n, -1);
  RB_REMOVE(tree, &s->t, n);
  freenode(n);
  return live;
}

int rf_store_tombstone(rf_store *s, const void *key, size_t klen) {
  node *n = slot(s, key, klen);
  if (n == NULL) return -1;
  account(s, n, -1);
  freeval(n);
  n->dead = 1;
  return 0;
}

/* ------------------------------------------------------------ bulk load */

/* Link v[lo, hi) into a balanced subtree under parent: the nodes on the
** deepest level, when it is not full, are red, so every path to a leaf
** has the same number of black nodes. */
static node *build(node **v, size_t lo, size_t hi, int depth, int reddepth,
                   node *parent) {
  size_t mid;
  node *n;
  if (lo >= hi) return NULL;
  mid = lo + (hi - lo) / 2;
  n = v[mid];
  RB_PARENT(n, rb) = parent;
  RB_COLOR(n, rb) = depth == reddepth ? RB_RED : RB_BLACK;
  RB_LEFT(n, rb) = build(v, lo, mid, depth + 1, reddepth, n);
  RB_RIGHT(n, rb) = build(v, mid + 1, hi, depth + 1, reddepth, n);
  return n;
}

static node *loadnode(const rf_store_kv *kv) {
  return newnode(kv->key, kv->klen, kv->val, kv->vlen, 0);
}

int rf_store_load(rf_store *s, size_t n, rf_store_src next, void *ud) {
  node **v;
  rf_store_kv kv;
  size_t i, full;
  int rc = 0, depth;
  if (!RB_EMPTY(&s->t)) return -2;
  if (n == 0) return 0;
  if (n > SIZE_MAX / sizeof(*v) || (v = malloc(n * sizeof(*v))) == NULL)
    return -1;
  for (i = 0; i < n; i++) { /* v[0, i) are made */
    memset(&kv, 0, sizeof(kv));
    if ((rc = next(ud, i, &kv)) < 0) break;
    if (i > 0 && rf_store_keycmp(v[i - 1]->data, v[i - 1]->klen, kv.key,
                                 kv.klen) >= 0) {
      rc = -2;
      break;
    }
    if ((v[i] = loadnode(&kv)) == NULL) {
      rc = -1;
      break;
    }
  }
  if (rc < 0) {
    while (i-- > 0) free(v[i]);
    free(v);
    return rc;
  }
  /* depth (from 0) of the deepest level; red unless the tree is perfect */
  for (depth = 0, full = 1; full * 2 <= n; depth++) full *= 2;
  RB_ROOT(&s->t) = build(v, 0, n, 0, n == full * 2 - 1 ? -1 : depth, NULL);
  for (i = 0; i < n; i++) account(s, v[i], 1);
  free(v);
  return 0;
}

/* Black height below n, or -1. */
static int checknode(const node *n, const node *parent) {
  const node *l, *r;
  int hl, hr;
  if (n == NULL) return 1;
  l = RB_LEFT(n, rb);
  r = RB_RIGHT(n, rb);
  if (RB_PARENT(n, rb) != parent) return -1;
  if (RB_COLOR(n, rb) == RB_RED && ((l && RB_COLOR(l, rb) == RB_RED) ||
                                    (r && RB_COLOR(r, rb) == RB_RED)))
    return -1;
  if ((l && nodecmp(l, n) >= 0) || (r && nodecmp(n, r) >= 0)) return -1;
  if ((hl = checknode(l, n)) < 0 || (hr = checknode(r, n)) < 0 || hl != hr)
    return -1;
  return hl + (RB_COLOR(n, rb) == RB_BLACK);
}

int rf_store_check(const rf_store *s) {
  const node *root = RB_ROOT(&s->t);
  node *n, *prev = NULL;
  if (root && RB_COLOR(root, rb) != RB_BLACK) return -1;
  RB_FOREACH(n, tree, (struct tree *)&s->t) { /* global order */
    if (prev && nodecmp(prev, n) >= 0) return -1;
    prev = n;
  }
  return checknode(root, NULL);
}

/* Move one batch node into dst: no allocation, so merging cannot fail. */
static void movenode(rf_store *dst, node *n) {
  node *old = RB_FIND(tree, &dst->t, n);
  if (old != NULL) {
    account(dst, old, -1);
    RB_REMOVE(tree, &dst->t, old);
    freenode(old);
  }
  if (n->dead) {
    freenode(n);
    return;
  }
  RB_INSERT(tree, &dst->t, n);
  account(dst, n, 1);
}

void rf_store_merge(rf_store *dst, rf_store *src) {
  node *n, *next;
  RB_FOREACH_SAFE(n, tree, &src->t, next) {
    RB_REMOVE(tree, &src->t, n);
    movenode(dst, n);
  }
  src->count = 0;
  src->bytes = 0;
}

void rf_store_swap(rf_store *a, rf_store *b) {
  rf_store t = *a; /* nodes never point at the head: a plain swap */
  *a = *b;
  *b = t;
}

size_t rf_store_count(const rf_store *s) { return s->count; }
uint64_t rf_store_bytes(const rf_store *s) { return s->bytes; }

void rf_store_seek(const rf_store *s, rf_store_iter *it,
                   const void *key, size_t klen) {
  if (key == NULL) it->node = RB_MIN(tree, (struct tree *)&s->t);
  else it->node = descend(s, key, klen, 1);
}

int rf_store_next(rf_store_iter *it, rf_store_kv *kv) {
  node *n = it->node;
  if (n == NULL) return 0;
  kv->key = nkey(n);
  kv->klen = n->klen;
  kv->val = nval(n);
  kv->vlen = n->vlen;
  kv->dead = n->dead;
  it->node = RB_NEXT(tree, t, n);
  return 1;
}

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  while (n--) h = (h ^ *s++) * FNV_PRIME;
  return h;
}

static uint64_t fnvlen(uint64_t h, uint64_t len) {
  unsigned char b[8];
  int i;
  for (i = 0; i < 8; i++) b[i] = (unsigned char)(len >> (8 * i));
  return fnv(h, b, 8);
}

uint64_t rf_store_digest(const rf_store *s) {
  uint64_t h = FNV_OFFSET;
  rf_store_iter it;
  rf_store_kv kv;
  rf_store_seek(s, &it, NULL, 0);
  while (rf_store_next(&it, &kv)) {
    if (kv.dead) continue;
    h = fnv(fnvlen(h, kv.klen), kv.key, kv.klen);
    h = fnv(fnvlen(h, kv.vlen), kv.val, kv.vlen);
  }
  return h;
}
