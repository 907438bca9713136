#!/usr/bin/env bash
# Wrap "Scrambled Eggs.app" in a compressed disk image with an /Applications link, so
# users drag the app across. Signs and notarises when the credentials are in the
# environment (see README.md beside this file); without them the image is unsigned.
#
#   bash packaging/macos/build_dmg.sh "dist/Scrambled Eggs.app" dist/scrambled-eggs.dmg
set -euo pipefail

app="$1"
dmg="$2"
identity="${MACOS_CODESIGN_IDENTITY:-}"
here="$(cd "$(dirname "$0")" && pwd)"

[ -d "$app" ] || { echo "no app bundle at $app" >&2; exit 1; }

if [ -n "$identity" ]; then
    # PyInstaller signed each binary when MACOS_CODESIGN_IDENTITY was set; sign the bundle
    # as a whole with the hardened runtime, then check it.
    codesign --force --timestamp --options runtime \
        --entitlements "$here/entitlements.plist" --sign "$identity" "$app"
    codesign --verify --deep --strict --verbose=2 "$app"
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname "Scrambled Eggs" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"

if [ -n "$identity" ]; then
    codesign --force --timestamp --sign "$identity" "$dmg"
fi
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
    # a keychain profile made once with: xcrun notarytool store-credentials
    xcrun notarytool submit "$dmg" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
    xcrun stapler staple "$dmg"
    spctl --assess --type open --context context:primary-signature --verbose=2 "$dmg"
fi
echo "$dmg"
