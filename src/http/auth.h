/*
** auth.h -- bearer-token authentication of the REST API.
**
** The tokens come from the config (auth.tokens / auth.tokens_file, see
** rafting/config.h); every node of a cluster has the same list.  Each route
** needs a role (read < write < admin, see the table in auth.c); /health is
** open.  A config without tokens leaves the API open.  Nothing here
** allocates or keeps a pointer; tokens are never logged.
*/
#ifndef RAFTING_HTTP_AUTH_H
#define RAFTING_HTTP_AUTH_H

#include <stddef.h>

#include "rafting/config.h"
#include "rafting/http.h"

/* The role method+path needs: 0 (open) or RF_ROLE_*. */
int rf_auth_required(const char *method, const char *path, size_t len);

/* The role of the token in an "Authorization: Bearer <token>" value, 0 if
** absent, malformed or unknown.  Compares against every token in constant
** time per token (no early exit). */
int rf_auth_role(const rf_config *cfg, const char *header, size_t len);

/* 1 if req may proceed; otherwise answers it (401 with WWW-Authenticate,
** or 403) and returns 0. */
int rf_auth_allow(const rf_config *cfg, rf_http_req *req);

#endif
