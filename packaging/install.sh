#!/bin/sh
# Install maomao from its zipapp on this machine (as root):
#
#   make zipapp && sudo packaging/install.sh [ZIPAPP]      (default: dist/maomao)
#
# - the zipapp as /usr/local/bin/maomao, and /usr/local/bin/maoctl -> maomao
# - the systemd unit as /etc/systemd/system/maomao.service
# - /etc/maomao/config.ini from the repository's config.ini, unless it exists
# - a system user and group maomao (home /var/lib/maomao), added to the
#   container engine socket's group when there is one (docker, or the group
#   of Podman's /run/podman/podman.sock)
# - systemctl daemon-reload, only when systemd is running
#
# Again: upgrades the zipapp and the unit, keeps the config file and the user.
# Then: systemctl enable --now maomao.  PREFIX (default /usr/local) and
# DESTDIR (default empty: this machine) change where files go.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
zipapp=${1:-$repo/dist/maomao}
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
bindir=$DESTDIR$PREFIX/bin
unitdir=$DESTDIR/etc/systemd/system
confdir=$DESTDIR/etc/maomao

if [ ! -f "$zipapp" ]; then
    echo "install.sh: $zipapp not found: run 'make zipapp' first" >&2
    exit 1
fi

install -d -m 0755 "$bindir" "$unitdir" "$confdir"
install -m 0755 "$zipapp" "$bindir/maomao.new"
mv -f "$bindir/maomao.new" "$bindir/maomao"
ln -sf maomao "$bindir/maoctl"
sed "s#^ExecStart=/usr/local/bin/maomao #ExecStart=$PREFIX/bin/maomao #" \
    "$repo/systemd/maomao.service" > "$unitdir/maomao.service"
chmod 0644 "$unitdir/maomao.service"
if [ ! -e "$confdir/config.ini" ]; then
    install -m 0644 "$repo/config.ini" "$confdir/config.ini"
fi

[ -n "$DESTDIR" ] && exit 0
"$here/postinst" configure
