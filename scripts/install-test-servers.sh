#!/usr/bin/env bash
# Installs the real servers the test suite talks to on loopback: Dovecot (IMAP)
# and PowerDNS with its SQLite backend; Postfix, Dovecot's LMTP and SQL drivers for
# the hosted mail server (`mailfleet mailserver run`); Chromium for the console's
# browser tests. PostgreSQL 15 binaries are expected on
# PATH (initdb, pg_ctl); they are installed from Debian when missing.
set -euo pipefail

need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
command -v pdns_server >/dev/null 2>&1 || [ -x /usr/sbin/pdns_server ] || need+=(pdns-server pdns-backend-sqlite3)
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || need+=(postfix)
# dovecot-sieve: warmup tests have Sieve file some senders' mail into Junk.
for package in postfix-sqlite postfix-pgsql dovecot-lmtpd dovecot-sqlite dovecot-pgsql dovecot-sieve; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || need+=("$package")
done
# chromium: the console's browser tests (Playwright drives it; never `playwright install`).
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test servers missing: ${need[*]} (install with apt-get as root; their tests will skip)" >&2
  exit 0
fi
echo "installing test servers: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix's debconf default ("Internet Site") writes /etc/postfix/main.cf, which
# `postfix -c DIR` also reads; its own service is stopped below (it would hold port 25).
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's packages try to start their services; tests start private instances instead.
for service in dovecot pdns postfix; do
  if [ -x "/etc/init.d/$service" ]; then "/etc/init.d/$service" stop >/dev/null 2>&1 || true; fi
done
