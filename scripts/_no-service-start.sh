# Sourced by the install-*.sh scripts before apt-get install: package maintainer scripts must
# never start system services here (invoke-rc.d honours policy-rc.d; exit status 101 = "action
# forbidden"). Whatever policy-rc.d was there before is restored when the sourcing script exits.
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
if [ -e "$POLICY" ]; then
    POLICY_BACKUP="$(mktemp)"
    cp -p "$POLICY" "$POLICY_BACKUP"
fi
restore_policy() {
    if [ -n "$POLICY_BACKUP" ]; then
        mv -f "$POLICY_BACKUP" "$POLICY"
    else
        rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$POLICY"
chmod 0755 "$POLICY"
