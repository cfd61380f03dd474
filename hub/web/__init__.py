"""The operator pages: server-rendered HTML, plain forms, one inline stylesheet, no build.

Each page module under :mod:`hub.web.pages` reads through the same
:mod:`hub.views` queries the API answers from, so a page and an API call
never disagree about a cycle.
"""
