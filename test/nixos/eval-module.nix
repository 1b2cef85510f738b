# Evaluates nixos/module.nix with the stub lib (stub-lib.nix) and stub packages, as a
# tiny one-module "module system":
# - services.blixard is resolved from the module's own option declarations: each value is
#   the one given in `settings` or the declared default (an option without default that is
#   read throws "used but not defined"), defaults inside submodules are filled in, undeclared
#   names are refused, and every value must pass its type's check;
# - package defaults to a stub derivation, as the flake's nixosModules.blixard sets it;
# - the module's `config` is then flattened: mkIf false drops, mkMerge merges attrsets
#   recursively and concatenates lists (two different scalars are a conflict), mkDefault
#   and mkForce are unwrapped (priorities are not compared);
# - assertions are evaluated and the failing messages returned.
# Nothing outside services.blixard is checked against real NixOS options.
# hostConfig stands for the rest of the host's configuration the module reads (networking
# backend, firewall, interfaces): given, not computed; the module's own definitions do not feed back.
{ settings ? { }, hostName ? "host-a", hostConfig ? { } }:
let
  lib = import ./stub-lib.nix;
  stubPkg = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  pkgs = {
    formats.toml = _: {
      # any attrset: the stub does not check TOML-representable values
      type = { _type = "option-type"; name = "tomlValue"; check = builtins.isAttrs; };
      generate = name: value: { outPath = "/nix/store/00000000000000000000000000000000-${name}"; inherit name value; };
    };
    writeText = name: text: { outPath = "/nix/store/00000000000000000000000000000000-${name}"; inherit name text; };
    iproute2 = stubPkg "iproute2";
    util-linux = stubPkg "util-linux";
    ceph-client = stubPkg "ceph-client";
    # override returns a distinct package and records what it was asked for
    qemu_kvm = stubPkg "qemu" // { override = args: stubPkg "qemu-overridden" // { overrideArgs = args; }; };
  };

  notSet = { _blixardNotSet = true; };
  isNotSet = v: builtins.isAttrs v && v ? _blixardNotSet;
  isOption = d: builtins.isAttrs d && (d._type or null) == "option";
  showPath = builtins.concatStringsSep ".";

  resolveOption = path: opt: v:
    let
      given = if isNotSet v then (if opt ? default then opt.default else throw "option ${showPath path} is used but not defined") else v;
      t = opt.type;
      deep =
        if t.name == "submodule" && t ? freeformType then
          let
            free = lib.filterAttrs (n: _: !(t.options ? ${n})) given;
            typed = resolve path t.options (lib.filterAttrs (n: _: t.options ? ${n}) given);
          in if t.freeformType.check free then free // typed else throw "option ${showPath path}: freeform ${builtins.toJSON free} is not a valid ${t.freeformType.name}"
        else if t.name == "submodule" then resolve path t.options given
        else if t.name == "attrsOf" && t.elemType.name == "submodule" then builtins.mapAttrs (n: x: resolve (path ++ [ n ]) t.elemType.options x) given
        else if t.name == "listOf" && t.elemType.name == "submodule" then map (resolve path t.elemType.options) given
        else given;
    in
    if t.check deep then deep
    # toJSON of a Nix path would copy it into the store: show a path as written
    else throw "option ${showPath path}: ${if builtins.isPath deep then "the Nix path ${toString deep}" else builtins.toJSON deep} is not a valid ${t.name}";

  resolve = path: decls: value:
    let
      v = if isNotSet value then { } else value;
      unknown = builtins.filter (n: !(decls ? ${n})) (builtins.attrNames v);
    in
    if isOption decls then resolveOption path decls value
    else if unknown != [ ] then throw "undeclared option ${showPath (path ++ [ (builtins.head unknown) ])}"
    else builtins.mapAttrs (n: d: resolve (path ++ [ n ]) d (v.${n} or notSet)) decls;

  typeName = t:
    if t ? elemType then "${t.name} ${typeName t.elemType}"
    else if t.name == "enum" then "enum ${builtins.toJSON t.values}"
    else if t.name == "strMatching" then "strMatching ${t.regex}"
    else t.name;

  describe = decls:
    if isOption decls then
      { type = typeName decls.type; hasDefault = decls ? default; }
      // lib.optionalAttrs (decls ? default) { default = decls.default; }
      // lib.optionalAttrs (decls.type.name == "submodule") { options = describe decls.type.options; }
      // lib.optionalAttrs (decls.type.name == "attrsOf" && decls.type.elemType.name == "submodule") { options = describe decls.type.elemType.options; }
    else builtins.mapAttrs (_: describe) decls;

  absent = { _blixardAbsent = true; };
  isAbsent = v: builtins.isAttrs v && v ? _blixardAbsent;
  isDerivation = v: (v.type or null) == "derivation";
  merge2 = path: a: b:
    if builtins.isAttrs a && builtins.isAttrs b && !isDerivation a && !isDerivation b then
      a // builtins.mapAttrs (n: bv: if a ? ${n} then merge2 (path ++ [ n ]) a.${n} bv else bv) b
    else if builtins.isList a && builtins.isList b then a ++ b
    else if a == b then a
    else throw "conflicting definitions of ${showPath path}";
  flatten = path: v:
    if builtins.isAttrs v && !isDerivation v then
      let t = v._type or null; in
      if t == "if" then (if v.condition then flatten path v.content else absent)
      else if t == "merge" then
        builtins.foldl' (merge2 path) { } (builtins.filter (x: !isAbsent x) (map (flatten path) v.contents))
      else if t == "override" then flatten path v.content
      else lib.filterAttrs (_: x: !isAbsent x) (builtins.mapAttrs (n: flatten (path ++ [ n ])) v)
    else if builtins.isList v then map (flatten path) v
    else v;

  module = import ../../nixos/module.nix;
  res = module { inherit lib pkgs config; };
  config = lib.recursiveUpdate {
    networking = { hostName = hostName; useNetworkd = false; firewall = { enable = true; allowedUDPPorts = [ ]; }; interfaces = { }; };
    systemd = { package = stubPkg "systemd"; network.enable = false; };
    nix.package = stubPkg "nix";
  } hostConfig // {
    services.blixard = resolve [ "services" "blixard" ] res.options.services.blixard
      ({ package = stubPkg "blixard"; } // settings);
  };
  flat = flatten [ ] res.config;
  top = if isAbsent flat then { } else flat;
in
{
  options = describe res.options.services.blixard;
  cfg = config.services.blixard;
  config = top;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) (top.assertions or [ ]));
  # what the stub generators were given (the JSON of `config` only shows their store paths)
  tomlSettings = top.environment.etc."blixard/config.toml".source.value or null;
  hostToml = top.environment.etc."blixard/host.toml" or null;
  qemuOverrideArgs = config.services.blixard.qemuPackage.overrideArgs or null;
  warnings = top.warnings or [ ];
  cephConfText = top.environment.etc."blixard/ceph.conf".source.text or null;
}
