/*
** codec.h -- raft_msg <-> peer wire frames (proto/raft.proto).
**
** A frame is a 4-byte big-endian length followed by that many bytes of a
** packed rafting.Envelope: cluster name, sender, recipient, term and one
** Raft message.  The codec checks what a peer could get wrong before the
** core sees it: the cluster name, node ids, the message type, entry types,
** and that an append's entries follow prev index contiguously with
** non-decreasing terms no newer than the message term.
**
** Memory: rf_codec_encode() returns one malloc'd buffer (prefix included)
** that the caller frees.  rf_codec_decode() fills an rf_decoded that owns
** the unpacked protobuf message; d->msg and everything it points to (the
** entries and their data) stay valid until rf_decoded_free().
**
** Snapshot messages: raft_msg carries only index/log_term (the snapshot's)
** and reject; the chunk fields of InstallSnapshot (voters, offset, data,
** done) travel empty until the core grows them.
**
** Errors are negative RF_CODEC_E* codes, aliases of rafting/error.h's
** RF_E* codes (rf_strerror names them); 0 is success.
*/
#ifndef RAFTING_CODEC_H
#define RAFTING_CODEC_H

#include "rafting/error.h"

#include <stddef.h>
#include <stdint.h>

#include "rafting/raft.h"

#define RF_FRAME_HEADER 4 /* bytes of big-endian length before each frame */

enum {
  RF_CODEC_ENOMEM = RF_ENOMEM,
  RF_CODEC_ECLUSTER = RF_ECLUSTER, /* frame names another cluster */
  RF_CODEC_EUNPACK = RF_EUNPACK,   /* bytes are not a packed Envelope */
  RF_CODEC_ETYPE = RF_ETYPE,       /* no body / unknown message type */
  RF_CODEC_ERANGE = RF_ERANGE,     /* a field out of range (node id, entry type,
                                      entry index or term) */
  RF_CODEC_EINVAL = RF_EINVAL      /* bad argument (NULL, empty cluster name) */
};

typedef struct rf_decoded {
  raft_msg msg;       /* the message; valid until rf_decoded_free() */
  const char *hello;  /* a Hello (msg.type 0): the sender's "host:port",
                      ** possibly ""; NULL for a Raft message */
  /* private */
  void *env_;         /* Rafting__Envelope * */
  raft_entry *ents_;
} rf_decoded;

/*
** Encode m for cluster as one frame.  On success *out is a malloc'd buffer
** of *len bytes: RF_FRAME_HEADER bytes of length, then the packed envelope.
** Fails with RF_CODEC_ERANGE/ETYPE for a message the decoder would refuse.
*/
int rf_codec_encode(const char *cluster, const raft_msg *m, uint8_t **out,
                    size_t *len);

/* A Hello frame from `from` to `to` saying from listens on addr ("host:port"
** or ""), as rf_codec_encode's. */
int rf_codec_encode_hello(const char *cluster, uint64_t from, uint64_t to,
                          const char *addr, uint8_t **out, size_t *len);

/*
** Decode the len packed bytes of one frame (without its length prefix),
** accepting only frames of cluster.  On success fills d; on failure d needs
** no free (rf_decoded_free() on it is still harmless).
*/
int rf_codec_decode(const uint8_t *buf, size_t len, const char *cluster,
                    rf_decoded *d);
void rf_decoded_free(rf_decoded *d);

/* Read / write the big-endian frame length prefix. */
uint32_t rf_frame_len(const uint8_t *p);
void rf_frame_put_len(uint8_t *p, uint32_t n);

const char *rf_codec_strerror(int err);

#endif
