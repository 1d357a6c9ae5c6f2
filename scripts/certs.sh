#!/bin/sh
# certs.sh DIR [CONFIG] -- a CA and one certificate per node, for tls = {...}.
#
# Makes DIR/ca.pem + DIR/ca.key (kept if already there, so that adding a
# node reuses the CA) and, for every node id in CONFIG (default 1 2 3),
# DIR/node<ID>.pem + .key: CN and DNS SAN node<ID> (the name peers check),
# plus DNS:localhost and IP:127.0.0.1 so that curl --cacert DIR/ca.pem
# https://127.0.0.1:PORT works.  EC P-256 keys, SHA-256, key files 0600.
# Uses only the openssl command.  See docs/security.md.
set -eu
[ $# -ge 1 ] || { echo "usage: certs.sh DIR [CONFIG]" >&2; exit 2; }
dir=$1
ids="1 2 3"
if [ $# -ge 2 ]; then
  ids=$(CFG=$2 lua5.4 -e \
    'for _, n in ipairs(dofile(os.getenv("CFG")).nodes) do print(n.id) end') ||
    { echo "certs.sh: cannot read node ids from $2" >&2; exit 2; }
fi
days=${CERT_DAYS:-825}
umask 077
mkdir -p "$dir"
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 -sha256 \
    -subj "/CN=rafting CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "certs.sh: made $dir/ca.pem" >&2
fi
for id in $ids; do
  n=node$id
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/$n.key" -out "$dir/$n.csr" -subj "/CN=$n" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:$n,DNS:localhost,IP:127.0.0.1" \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" >"$dir/$n.ext"
  openssl x509 -req -in "$dir/$n.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$dir/$n.ext" \
    -out "$dir/$n.pem" 2>/dev/null
  rm -f "$dir/$n.csr" "$dir/$n.ext"
  echo "certs.sh: made $dir/$n.pem" >&2
done
