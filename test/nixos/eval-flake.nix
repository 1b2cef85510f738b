# Evaluates the root flake.nix and nixos/package.nix against stand-ins for nixpkgs and
# microvm.nix: nixpkgs.lib.genAttrs is real (written from builtins), callPackage imports the
# file and calls it with stub arguments, buildNpmPackage returns its arguments, lib.fileset
# returns the paths it was given as strings. Checks the outputs' shape and the package's
# arguments; it does not build anything and does not check the npm dependency hash.
{ system ? "x86_64-linux" }:
let
  stubLib = import ./stub-lib.nix;
  lib = stubLib // {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    importJSON = p: builtins.fromJSON (builtins.readFile p);
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    licenses.mit = "mit";
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    fileset = {
      unions = ps: map toString ps;
      toSource = { root, fileset }: { root = toString root; inherit fileset; };
    };
  };
  mkPkgs = sys: rec {
    inherit lib;
    stdenv.hostPlatform.system = sys;
    nodejs_20 = { type = "derivation"; outPath = "/nix/store/00000000000000000000000000000000-nodejs-20"; };
    makeWrapper = "makeWrapper";
    python3 = "python3";
    # what importNpmLock would fetch: every lockfile entry, by its resolved URL and integrity
    importNpmLock = {
      __functor = _: { package, packageLock, ... }: {
        pname = package.name;
        fetched = map (k: { path = k; inherit (packageLock.packages.${k}) resolved integrity; })
          (builtins.filter (k: k != "" && (packageLock.packages.${k}.link or false) != true) (builtins.attrNames packageLock.packages));
      };
      npmConfigHook = "importNpmLock.npmConfigHook";
    };
    buildNpmPackage = args: args // { type = "derivation"; outPath = "/nix/store/00000000000000000000000000000000-blixard"; };
    callPackage = path: overrides: import path ({ inherit lib buildNpmPackage importNpmLock nodejs_20 makeWrapper python3; } // overrides);
    mkShell = args: args;
    nix = "nix";
    qemu = "qemu";
    # returns the test's arguments instead of building VMs
    testers.runNixOSTest = args: args;
  };
  nixpkgs = {
    outPath = "/nix/store/00000000000000000000000000000000-nixpkgs-source";
    lib = lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] mkPkgs;
  };
  microvm = {
    outPath = "/nix/store/00000000000000000000000000000000-microvm-source";
    nixosModules.host = "microvm.nixosModules.host";
  };
  flake = import ../../flake.nix;
  outputs = flake.outputs { self = outputs; inherit nixpkgs microvm; };
  pkg = outputs.packages.${system}.blixard;
  hostModule = outputs.nixosModules.blixard { inherit lib; pkgs = mkPkgs system; };
in
{
  description = flake.description;
  inputs = flake.inputs;
  packageSystems = builtins.attrNames outputs.packages;
  package = {
    inherit (pkg) pname version npmBuildScript installPhase npmConfigHook;
    hasNpmDepsHash = pkg ? npmDepsHash;
    npmDeps = pkg.npmDeps;
    nodejs = pkg.nodejs.outPath;
    src = pkg.src;
    defaultIsBlixard = outputs.packages.${system}.default.pname == pkg.pname;
  };
  moduleImports = map (m: if builtins.isString m then m else baseNameOf m) hostModule.imports;
  modulePackageDefault = {
    inherit (hostModule.services.blixard.package) _type priority;
    pname = hostModule.services.blixard.package.content.pname;
  };
  moduleServiceKeys = builtins.attrNames hostModule.services.blixard;
  checkSystems = builtins.attrNames outputs.checks;
  clusterTest = let t = outputs.checks.${system}.cluster; in {
    inherit (t) name testScript;
    nodes = builtins.attrNames t.nodes;
  };
  # functions never compare equal in Nix: check the default module is the same expression by its imports
  defaultModuleImports = map (m: if builtins.isString m then m else baseNameOf m) (outputs.nixosModules.default { inherit lib; pkgs = mkPkgs system; }).imports;
}
