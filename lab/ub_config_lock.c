/*
 * Serialise libunbound's ub_ctx_config() inside the lab's OpenDKIM (loaded with LD_PRELOAD by
 * lab/milters.py).
 *
 * OpenDKIM 2.11 (Debian 12) reads its ResolverConfiguration file with ub_ctx_config() for every
 * message it signs or verifies, in whichever libmilter thread handles the message. That function
 * parses with a flex lexer and a bison parser that are not reentrant (global state), so two messages
 * at once corrupt each other's parse: "fatal flex scanner internal error--end of buffer missed", or a
 * general protection fault / segfault in libc, and OpenDKIM is gone (OpenDKIM issue #14 upstream,
 * whose fix is this same mutex). Measured in the lab: dead within 1 s at 25 submissions/s without
 * this, none lost in 1000 at the same rate with it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

struct ub_ctx;

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;

int ub_ctx_config(struct ub_ctx *ctx, const char *fname)
{
	static int (*real)(struct ub_ctx *, const char *) = NULL;
	int status;

	pthread_mutex_lock(&config_lock);
	if (real == NULL)
		real = (int (*)(struct ub_ctx *, const char *)) dlsym(RTLD_NEXT, "ub_ctx_config");
	status = real == NULL ? -1 : real(ctx, fname);
	pthread_mutex_unlock(&config_lock);
	return status;
}
