#!/bin/sh
# Add or replace MQTT users in a Mosquitto password file, each with a new random password.
#   deploy/mosquitto/passwd.sh PASSWD_FILE USER [USER...]
# Prints "USER PASSWORD" per user on stdout, for provisioning the devices; keep nothing else.
# Devices log in with their elevator_id as user name (the ACL's %u), the gateway as
# elevator-gateway. Mosquitto reads the file at start and on SIGHUP.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 PASSWD_FILE USER [USER...]" >&2
    exit 2
fi
file=$1
shift
umask 077
[ -e "$file" ] || : >"$file"
for user in "$@"; do
    password=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
    mosquitto_passwd -b "$file" "$user" "$password"
    printf '%s %s\n' "$user" "$password"
done
