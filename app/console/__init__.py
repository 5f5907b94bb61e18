"""The browser console: DARA's pages, their scripts and styles, and the API docs, all
served by DARA itself (no CDN), under a Content-Security-Policy that runs only DARA's
own script files."""
