/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* Compiles Debian node-llhttp's http.c (found with -I$(LLHTTP_SRCDIR)); never a copy in this tree. */
#include <http.c>
