"""The deployment artefacts under deploy/, read the way their runtimes read them and checked
against the code they run.

Every ``check_*`` function returns a list of problems (empty: all is well), so the tests can
feed it the real artefacts and deliberately broken ones.
"""
