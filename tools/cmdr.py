#!/usr/bin/env python3
"""cmdr.py prints one MDM command as an XML plist, ready for nanomdm's enqueue API.

The plist holds a CommandUUID and a Command dictionary whose RequestType names
the command. Pipe it into curl:

    tools/cmdr.py ProfileList | curl -u nanomdm:$KEY -T - https://mdm.example.com/v1/enqueue/$UDID
    tools/cmdr.py -r | curl -u nanomdm:$KEY -T - 'http://localhost:9000/v1/enqueue/UDID?nopush=1'
    tools/cmdr.py InstallProfile wifi.mobileconfig > cmd.plist

With --ids-file it sends the command itself to many enrollments at once, as a
multipart/form-data POST to /v1/enqueue (IDs one a line; no URL length limit),
using NANOCTL_URL and NANOCTL_KEY (the API key) like nanoctl, and prints the
JSON answer:

    tools/cmdr.py --ids-file ids.txt --nopush ProfileList

Python 3 standard library only. Run `cmdr.py -h` for the command list and
`cmdr.py COMMAND -h` for the arguments of one command.
"""

import argparse
import base64
import os
import plistlib
import random
import sys
import urllib.error
import urllib.request
import uuid

# Commands that take no arguments: the Command dictionary is only the RequestType.
NO_ARGUMENT_COMMANDS = [
    "ProfileList",
    "ProvisioningProfileList",
    "CertificateList",
    "SecurityInfo",
    "RestartDevice",
    "ShutDownDevice",
    "StopMirroring",
    "ClearRestrictionsPassword",
    "UserList",
    "LogOutUser",
    "PlayLostModeSound",
    "DisableLostMode",
    "DeviceLocation",
    "ManagedMediaList",
    "DeviceConfigured",
    "AvailableOSUpdates",
    "NSExtensionMappings",
    "OSUpdateStatus",
    "EnableRemoteDesktop",
    "DisableRemoteDesktop",
    "ActivationLockBypassCode",
    "ScheduleOSUpdateScan",
]

# Commands that only read from the device: -r picks one of these.
READ_ONLY_COMMANDS = [
    "ProfileList",
    "ProvisioningProfileList",
    "CertificateList",
    "SecurityInfo",
    "UserList",
    "ManagedMediaList",
    "AvailableOSUpdates",
    "NSExtensionMappings",
    "OSUpdateStatus",
    "DeviceInformation",
]

# What DeviceInformation asks for when no queries are given.
DEFAULT_QUERIES = [
    "UDID",
    "SerialNumber",
    "DeviceName",
    "Model",
    "ModelName",
    "ProductName",
    "OSVersion",
    "BuildVersion",
    "DeviceCapacity",
    "AvailableDeviceCapacity",
    "BatteryLevel",
    "IsSupervised",
    "IsActivationLockEnabled",
]

INSTALL_ACTIONS = ["Default", "DownloadOnly", "InstallASAP", "NotifyOnly", "InstallLater", "InstallForceRestart"]


class UsageError(Exception):
    """UsageError is a mistake on the command line, reported without a traceback."""


def on_off(value):
    """on_off turns "on"/"off" (and the usual synonyms) into a bool for argparse."""
    v = value.lower()
    if v in ("on", "true", "yes", "1", "enable", "enabled"):
        return True
    if v in ("off", "false", "no", "0", "disable", "disabled"):
        return False
    raise argparse.ArgumentTypeError("want on or off, got %r" % value)


def read_file(path):
    """read_file returns the bytes of path, or of standard input for "-"."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError("reading %s: %s" % (path, e.strerror or e))


# Builders: each takes the parsed arguments and returns the keys of the
# Command dictionary besides RequestType.


def build_device_information(args):
    return {"Queries": list(args.queries) or list(DEFAULT_QUERIES)}


def build_install_profile(args):
    payload = read_file(args.file)
    if not payload:
        raise UsageError("profile %s is empty" % args.file)
    return {"Payload": payload}


def build_remove_profile(args):
    return {"Identifier": args.identifier}


def build_schedule_os_update(args):
    update = {"InstallAction": args.action}
    if args.product_key:
        update["ProductKey"] = args.product_key
    if args.product_version:
        update["ProductVersion"] = args.product_version
    if args.max_user_deferrals is not None:
        update["MaxUserDeferrals"] = args.max_user_deferrals
    if args.priority:
        update["Priority"] = args.priority
    return {"Updates": [update]}


def build_account_configuration(args):
    keys = {
        "SkipPrimarySetupAccountCreation": args.skip_primary,
        "SetPrimarySetupAccountAsRegularUser": args.regular_user,
    }
    if args.primary_full_name:
        keys["PrimaryAccountFullName"] = args.primary_full_name
    if args.primary_user_name:
        keys["PrimaryAccountUserName"] = args.primary_user_name
    if args.lock_primary:
        keys["LockPrimaryAccountInfo"] = True
    if bool(args.admin_short_name) != bool(args.admin_password_hash):
        raise UsageError("--admin-short-name and --admin-password-hash go together")
    if args.admin_short_name:
        keys["AutoSetupAdminAccounts"] = [{
            "shortName": args.admin_short_name,
            "fullName": args.admin_full_name or args.admin_short_name,
            "passwordHash": read_file(args.admin_password_hash),
            "hidden": args.admin_hidden,
        }]
    return keys


def build_settings(args):
    items = []
    if args.device_name:
        items.append({"Item": "DeviceName", "DeviceName": args.device_name})
    if args.hostname:
        items.append({"Item": "HostName", "HostName": args.hostname})
    for flag, item in (("bluetooth", "Bluetooth"), ("data_roaming", "DataRoaming"),
                       ("voice_roaming", "VoiceRoaming"), ("personal_hotspot", "PersonalHotspot")):
        value = getattr(args, flag)
        if value is not None:
            items.append({"Item": item, "Enabled": value})
    if args.maximum_resident_users is not None:
        items.append({"Item": "MaximumResidentUsers", "MaximumResidentUsers": args.maximum_resident_users})
    if not items:
        raise UsageError("Settings needs at least one setting, e.g. --device-name NAME (see Settings -h)")
    return {"Settings": items}


def build_erase_device(args):
    keys = {}
    if args.pin:
        keys["PIN"] = args.pin
    if args.preserve_data_plan:
        keys["PreserveDataPlan"] = True
    if args.disallow_proximity_setup:
        keys["DisallowProximitySetup"] = True
    if args.obliteration_behavior:
        keys["ObliterationBehavior"] = args.obliteration_behavior
    return keys


def build_device_lock(args):
    keys = {}
    if args.pin:
        keys["PIN"] = args.pin
    if args.message:
        keys["Message"] = args.message
    if args.phone_number:
        keys["PhoneNumber"] = args.phone_number
    return keys


def build_nothing(args):
    return {}


def new_parser():
    """new_parser describes the command line: global options and one sub-command per command."""
    p = argparse.ArgumentParser(
        prog="cmdr.py",
        description="Print an MDM command plist (CommandUUID + Command/RequestType) for nanomdm's "
                    "/v1/enqueue API, e.g.: cmdr.py ProfileList | curl -u nanomdm:KEY -T - URL/v1/enqueue/ID",
    )
    p.add_argument("-u", "--uuid", metavar="UUID", help="CommandUUID to use (default: a new random UUID)")
    p.add_argument("-r", "--random", action="store_true", help="print a random read-only command")
    p.add_argument("-l", "--list", action="store_true", help="list the sub-commands, one a line, and exit")
    p.add_argument("--ids-file", metavar="FILE",
                   help="send the command to the enrollment IDs in FILE (one a line; - reads standard input) "
                        "as a multipart form to URL/v1/enqueue instead of printing it")
    p.add_argument("--url",
                   help="server URL for --ids-file (default: $NANOCTL_URL); the API key is $NANOCTL_KEY")
    p.add_argument("--nopush", action="store_true", help="with --ids-file: queue without pushing")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")

    for name in NO_ARGUMENT_COMMANDS:
        s = sub.add_parser(name, help="%s (no arguments)" % name)
        s.set_defaults(request_type=name, build=build_nothing)

    s = sub.add_parser("DeviceInformation", help="query device attributes")
    s.add_argument("queries", nargs="*", metavar="QUERY",
                   help="attribute names to query (default: %s)" % " ".join(DEFAULT_QUERIES))
    s.set_defaults(request_type="DeviceInformation", build=build_device_information)

    s = sub.add_parser("InstallProfile", help="install a configuration profile")
    s.add_argument("file", metavar="FILE", help="the .mobileconfig file (signed or not); - reads standard input")
    s.set_defaults(request_type="InstallProfile", build=build_install_profile)

    s = sub.add_parser("RemoveProfile", help="remove an installed profile")
    s.add_argument("identifier", metavar="IDENTIFIER", help="PayloadIdentifier of the profile to remove")
    s.set_defaults(request_type="RemoveProfile", build=build_remove_profile)

    s = sub.add_parser("ScheduleOSUpdate", help="schedule a software update")
    s.add_argument("--action", choices=INSTALL_ACTIONS, default="Default", help="InstallAction (default: Default)")
    s.add_argument("--product-key", help="ProductKey of the update (see AvailableOSUpdates)")
    s.add_argument("--product-version", help="ProductVersion of the update, e.g. 17.5.1")
    s.add_argument("--max-user-deferrals", type=int, help="MaxUserDeferrals (macOS, with --action InstallLater)")
    s.add_argument("--priority", choices=["Low", "High"], help="Priority (macOS)")
    s.set_defaults(request_type="ScheduleOSUpdate", build=build_schedule_os_update)

    s = sub.add_parser("AccountConfiguration", help="configure Setup Assistant accounts (macOS, automated enrollment)")
    s.add_argument("--skip-primary", action="store_true", help="SkipPrimarySetupAccountCreation")
    s.add_argument("--regular-user", action="store_true", help="SetPrimarySetupAccountAsRegularUser")
    s.add_argument("--primary-full-name", help="PrimaryAccountFullName")
    s.add_argument("--primary-user-name", help="PrimaryAccountUserName")
    s.add_argument("--lock-primary", action="store_true", help="LockPrimaryAccountInfo")
    s.add_argument("--admin-short-name", help="create a managed admin account with this short name")
    s.add_argument("--admin-full-name", help="full name of the managed admin account")
    s.add_argument("--admin-password-hash", metavar="FILE",
                   help="file holding the account's passwordHash (a SALTED-SHA512-PBKDF2 plist)")
    s.add_argument("--admin-hidden", action="store_true", help="hide the managed admin account")
    s.set_defaults(request_type="AccountConfiguration", build=build_account_configuration)

    s = sub.add_parser("Settings", help="change device settings (at least one option)")
    s.add_argument("--device-name", help="DeviceName")
    s.add_argument("--hostname", help="HostName (macOS)")
    s.add_argument("--bluetooth", type=on_off, metavar="on|off", help="Bluetooth")
    s.add_argument("--data-roaming", type=on_off, metavar="on|off", help="DataRoaming")
    s.add_argument("--voice-roaming", type=on_off, metavar="on|off", help="VoiceRoaming")
    s.add_argument("--personal-hotspot", type=on_off, metavar="on|off", help="PersonalHotspot")
    s.add_argument("--maximum-resident-users", type=int, help="MaximumResidentUsers (Shared iPad)")
    s.set_defaults(request_type="Settings", build=build_settings)

    s = sub.add_parser("EraseDevice", help="erase the device (destroys its data)")
    s.add_argument("pin", nargs="?", metavar="PIN", help="six-digit Find My PIN (macOS)")
    s.add_argument("--preserve-data-plan", action="store_true", help="PreserveDataPlan")
    s.add_argument("--disallow-proximity-setup", action="store_true", help="DisallowProximitySetup")
    s.add_argument("--obliteration-behavior", choices=["Default", "DoNotObliterate", "ObliterateWithWarning", "Always"],
                   help="ObliterationBehavior (macOS)")
    s.set_defaults(request_type="EraseDevice", build=build_erase_device)

    s = sub.add_parser("DeviceLock", help="lock the device")
    s.add_argument("pin", nargs="?", metavar="PIN", help="six-digit unlock PIN (macOS)")
    s.add_argument("--message", help="Message shown on the lock screen")
    s.add_argument("--phone-number", help="PhoneNumber shown on the lock screen")
    s.set_defaults(request_type="DeviceLock", build=build_device_lock)

    s = sub.add_parser("command", help="any other command: only its RequestType")
    s.add_argument("request_type", metavar="REQUESTTYPE", help="the RequestType, e.g. InstalledApplicationList")
    s.set_defaults(build=build_nothing)
    p.subcommands = list(sub.choices)
    return p


def build_command(argv, rng=random):
    """build_command returns the command dictionary described by argv (without the program name),
    or None when argv asks for the list of sub-commands."""
    return parse_command(argv, rng)[0]


def parse_command(argv, rng=random):
    """parse_command returns the command dictionary described by argv (None when argv asks for
    the list of sub-commands) and the parsed arguments."""
    parser = new_parser()
    args = parser.parse_args(argv)
    if args.list:
        return None, args
    if not args.ids_file and (args.nopush or args.url is not None):
        raise UsageError("--url and --nopush go with --ids-file")
    if args.random:
        if args.subcommand:
            raise UsageError("-r picks the command itself: give no COMMAND with it")
        global_args = (["-u", args.uuid] if args.uuid else []) + (["--ids-file", args.ids_file] if args.ids_file else [])
        global_args += (["--url", args.url] if args.url else []) + (["--nopush"] if args.nopush else [])
        args = parser.parse_args(global_args + [rng.choice(READ_ONLY_COMMANDS)])
    if not args.subcommand:
        parser.print_usage(sys.stderr)
        raise UsageError("no COMMAND given (or use -r)")
    if not args.request_type.strip():
        raise UsageError("empty REQUESTTYPE")
    command_uuid = args.uuid if args.uuid is not None else str(uuid.uuid4())
    if not command_uuid.strip():
        raise UsageError("empty -u UUID")
    body = {"RequestType": args.request_type}
    body.update(args.build(args))
    return {"CommandUUID": command_uuid, "Command": body}, args


def read_ids(path):
    """read_ids returns the non-blank lines of path (- is standard input), stripped."""
    text = read_file(path).decode("utf-8", "replace")
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise UsageError("no enrollment IDs in %s" % path)
    return ids


def enqueue_form(plist, ids):
    """enqueue_form returns the body and Content-Type of the multipart/form-data enqueue form:
    a command part holding plist and an ids part with one ID a line."""
    boundary = "cmdr-" + uuid.uuid4().hex
    parts = []
    for name, filename, content in (("command", "cmd.plist", plist),
                                    ("ids", "ids.txt", ("\n".join(ids) + "\n").encode())):
        parts.append(b"--" + boundary.encode() + b"\r\n")
        parts.append(('Content-Disposition: form-data; name="%s"; filename="%s"\r\n'
                      "Content-Type: application/octet-stream\r\n\r\n" % (name, filename)).encode())
        parts.append(content + b"\r\n")
    parts.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(parts), "multipart/form-data; boundary=" + boundary


def send_form(args, plist):
    """send_form POSTs plist to the IDs of args.ids_file and prints the JSON answer; it
    returns the exit code: 0 when every ID succeeded (200), 1 otherwise."""
    base = args.url or os.environ.get("NANOCTL_URL", "")
    if not base:
        raise UsageError("--ids-file needs --url or NANOCTL_URL")
    key = os.environ.get("NANOCTL_KEY", "")
    if not key:
        raise UsageError("--ids-file needs the API key in NANOCTL_KEY")
    body, content_type = enqueue_form(plist, read_ids(args.ids_file))
    url = base.rstrip("/") + "/v1/enqueue" + ("?nopush=1" if args.nopush else "")
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"nanomdm:" + key.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            status, answer = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, answer = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        print("cmdr.py: sending to %s: %s" % (url, e), file=sys.stderr)
        return 1
    sys.stdout.buffer.write(answer)
    sys.stdout.buffer.flush()
    if status != 200:
        print("cmdr.py: server answered %d" % status, file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    try:
        cmd, args = parse_command(sys.argv[1:] if argv is None else argv)
        if cmd is None:
            print("\n".join(new_parser().subcommands))
            return 0
        plist = plistlib.dumps(cmd, fmt=plistlib.FMT_XML, sort_keys=True)
        if args.ids_file:
            return send_form(args, plist)
    except UsageError as e:
        print("cmdr.py: %s" % e, file=sys.stderr)
        return 2
    sys.stdout.buffer.write(plist)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
