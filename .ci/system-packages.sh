#!/usr/bin/env bash
# Debian packages the live tests and the live command need: PortAudio and a JACK server.
set -u
need=()
for pkg in libportaudio2 jackd2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "note: install ${need[*]} for live audio and its tests (e.g. sudo apt-get install ${need[*]});" \
       "rendering, training and the demo work without them"
fi
