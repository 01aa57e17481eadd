"""Install helpers run by ``make install`` (``install.sh``) before the package is installed."""
