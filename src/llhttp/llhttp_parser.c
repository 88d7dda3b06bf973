/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* Compiles Debian node-llhttp's llhttp.c (found with -I$(LLHTTP_SRCDIR)); never a copy in this tree. */
#include <llhttp.c>
