/*
** store.c -- ordered binary-safe key/value store (see rafting/store.h).
**
** One malloc per node holds the node and its key; the value is a second
** block, so replacing a value never moves the node in the tree.  Nodes made
** by rf_store_load carry their value in the same block (inl): a later put
** or tombstone then gives the node a separate value block as usual.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rafting/store.h"

#include <bsd/sys/tree.h>

typedef struct node {
  RB_ENTRY(node) rb;
  const unsigned char *key; /* points just past the node */
  unsigned char *val;       /* NULL when vlen == 0 */
  size_t klen, vlen;
  unsigned char dead, inl; /* inl: val is inside the node's block */
} node;

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
  return rf_store_keycmp(a->key, a->klen, b->key, b->klen);
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

static void freeval(node *n) {
  if (!n->inl) free(n->val);
  n->inl = 0;
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

static node *find(const rf_store *s, const void *key, size_t klen) {
  node k;
  k.key = key;
  k.klen = klen;
  return RB_FIND(tree, (struct tree *)&s->t, &k);
}

int rf_store_get(const rf_store *s, const void *key, size_t klen,
                 const void **val, size_t *vlen) {
  node *n = find(s, key, klen);
  if (n == NULL || n->dead) return 0;
  *val = n->val ? (const void *)n->val : "";
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

static node *newnode(const void *key, size_t klen) {
  node *n = malloc(sizeof(*n) + (klen ? klen : 1));
  if (n == NULL) return NULL;
  memset(n, 0, sizeof(*n));
  memcpy(n + 1, key, klen);
  n->key = (const unsigned char *)(n + 1);
  n->klen = klen;
  return n;
}

/* Find or insert the node of key (a fresh one is a dead placeholder). */
static node *slot(rf_store *s, const void *key, size_t klen) {
  node *n = find(s, key, klen);
  if (n != NULL) return n;
  if ((n = newnode(key, klen)) == NULL) return NULL;
  n->dead = 1;
  RB_INSERT(tree, &s->t, n);
  return n;
}

int rf_store_put(rf_store *s, const void *key, size_t klen,
                 const void *val, size_t vlen) {
  unsigned char *copy = NULL;
  node *n;
  if (vlen > 0) {
    if ((copy = malloc(vlen)) == NULL) return -1;
    memcpy(copy, val, vlen);
  }
  if ((n = slot(s, key, klen)) == NULL) {
    free(copy);
    return -1;
  }
  account(s, n, -1);
  freeval(n);
  n->val = copy;
  n->vlen = vlen;
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
  n->val = NULL;
  n->vlen = 0;
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
  size_t kl = kv->klen ? kv->klen : 1;
  node *n = malloc(sizeof(*n) + kl + kv->vlen);
  if (n == NULL) return NULL;
  memset(n, 0, sizeof(*n));
  memcpy(n + 1, kv->key, kv->klen);
  n->key = (const unsigned char *)(n + 1);
  n->klen = kv->klen;
  if (kv->vlen > 0) {
    n->val = (unsigned char *)(n + 1) + kl;
    memcpy(n->val, kv->val, kv->vlen);
    n->inl = 1;
  }
  n->vlen = kv->vlen;
  return n;
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
    if (i > 0 && rf_store_keycmp(v[i - 1]->key, v[i - 1]->klen, kv.key,
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
  struct tree *t = (struct tree *)&s->t;
  node k;
  if (key == NULL) {
    it->node = RB_MIN(tree, t);
    return;
  }
  k.key = key;
  k.klen = klen;
  it->node = RB_NFIND(tree, t, &k);
}

int rf_store_next(rf_store_iter *it, rf_store_kv *kv) {
  node *n = it->node;
  if (n == NULL) return 0;
  kv->key = n->key;
  kv->klen = n->klen;
  kv->val = n->val ? (const void *)n->val : "";
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
