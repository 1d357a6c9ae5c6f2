/*
** error.h -- the one error space of rafting.
**
** Every function that can fail returns 0 or a negative RF_E* code.  System
** errors are -errno (the same values libuv uses on Unix, so a UV_E* code is
** an RF_E* code); rafting's own conditions live below RF_E_BASE, where no
** errno reaches.  rf_strerror() names any of them; the REST API maps them to
** HTTP statuses in one place (src/http/api.c).  Pure: no libuv, no Lua.
*/
#ifndef RAFTING_ERROR_H
#define RAFTING_ERROR_H

#include <errno.h>

#define RF_E_BASE (-31000)

enum {
  RF_OK = 0,
  /* system conditions, as -errno */
  RF_ENOMEM = -ENOMEM,
  RF_EINVAL = -EINVAL,       /* malformed input */
  RF_EBUSY = -EBUSY,
  RF_EIO = -EIO,
  RF_ETIMEDOUT = -ETIMEDOUT, /* a request's deadline passed */
  RF_ECANCELED = -ECANCELED,
  /* rafting's own */
  RF_ENOTLEADER = RF_E_BASE - 1,  /* this node does not lead (now) */
  RF_ETOOBIG = RF_E_BASE - 2,     /* larger than the configured bound */
  RF_ENOTCOMMITTED = RF_E_BASE - 3, /* another leader's entry took the index */
  RF_ESTOPPING = RF_E_BASE - 4,   /* the node is stopping */
  RF_ESTORAGE = RF_E_BASE - 5,    /* storage failed: the node left the cluster */
  RF_ESNAPSHOT = RF_E_BASE - 6,   /* a snapshot covered the index: unknown */
  RF_ENOTFOUND = RF_E_BASE - 7,   /* no such command or query */
  RF_EFAILED = RF_E_BASE - 8,     /* a handler failed (error, budget, cap) */
  RF_EBADENTRY = RF_E_BASE - 9,   /* malformed entry or arguments */
  RF_ECORRUPT = RF_E_BASE - 10,   /* a file on disk fails its checks */
  RF_ENONE = RF_E_BASE - 11,      /* nothing there (no snapshot) */
  RF_ESTALE = RF_E_BASE - 12,     /* older than what is already kept */
  RF_ESCRIPT = RF_E_BASE - 13,    /* a commands script failed to load */
  RF_ECONFIG = RF_E_BASE - 14,    /* the configuration cannot be used */
  /* forwarding to the leader (src/http/forward.c) */
  RF_ECONNECT = RF_E_BASE - 15,   /* could not connect */
  RF_ELOST = RF_E_BASE - 16,      /* connection lost after sending: unknown */
  RF_EPROTO = RF_E_BASE - 17,     /* a malformed answer */
  /* peer frames (src/net/codec.c) */
  RF_ECLUSTER = RF_E_BASE - 18,   /* a frame of another cluster */
  RF_EUNPACK = RF_E_BASE - 19,    /* bytes that do not unpack */
  RF_ETYPE = RF_E_BASE - 20,      /* no body or an unknown message type */
  RF_ERANGE = RF_E_BASE - 21,     /* a field out of range */
  RF_EFORGED = RF_E_BASE - 22,    /* a message no correct peer sends */
  RF_ECONFLICT = RF_E_BASE - 23,  /* a name already taken */
  RF_E_LAST = RF_E_BASE - 24
};

/* A message for any RF_E* (or -errno) code; never NULL. */
const char *rf_strerror(int err);

#endif
