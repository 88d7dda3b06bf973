/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* admin_page.h — the page the admin endpoint serves at /: static HTML with inline CSS and a few
 * lines of inline script that poll /limits every second and show every rule's keys. No external
 * script, style or font, so it works offline and leaks nothing to a third party. It must hold no
 * data itself: the data comes from /limits, behind admin.token when one is set. */
#ifndef RLPROXY_ADMIN_PAGE_H
#define RLPROXY_ADMIN_PAGE_H

extern const char admin_page_html[];

#endif
