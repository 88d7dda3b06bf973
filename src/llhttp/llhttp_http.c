/* Compiles Debian node-llhttp's http.c (found with -I$(LLHTTP_SRCDIR)); never a copy in this tree. */
#include <http.c>
