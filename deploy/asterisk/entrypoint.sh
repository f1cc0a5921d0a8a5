#!/bin/sh
# Puts the AMI secret and the dialer's network from the environment into manager.conf, so no
# secret lives in the image or the repository, then runs Asterisk in the foreground.
set -eu
: "${DIALER_AMI_SECRET:?set DIALER_AMI_SECRET (the same secret the dialer uses)}"
permit="${DIALER_AMI_PERMIT:-172.16.0.0/255.240.0.0}"
sed -i \
  -e "s|^secret = .*|secret = ${DIALER_AMI_SECRET}|" \
  -e "s|^bindaddr = .*|bindaddr = 0.0.0.0|" \
  -e "s|^permit = .*|permit = ${permit}|" \
  /etc/asterisk/manager.conf
exec /usr/sbin/asterisk -f -U asterisk -G asterisk
