# The Blixard package: the TypeScript compiled with tsc, production node_modules from
# package-lock.json, and two wrappers (blixard-node, blixard) around Node 20.
{ lib, buildNpmPackage, importNpmLock, nodejs_20, makeWrapper, python3 }:
buildNpmPackage {
  pname = "blixard";
  version = (lib.importJSON ../package.json).version;

  # Only what the build reads: a change to tests or docs does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions (builtins.filter builtins.pathExists [
      ../package.json
      ../package-lock.json
      ../tsconfig.json
      ../bin
      ../protocols
      ../storage
      ../placement
      ../nixos
      ../node
      ../sim
      ../bench
      ../test
    ]);
  };

  nodejs = nodejs_20;

  # The npm dependencies, one fixed-output fetch per package-lock.json entry with the
  # entry's own `integrity` hash (nixpkgs' importNpmLock, in nixpkgs 24.05 and later): no
  # npmDepsHash to compute or to keep in step with the lockfile.
  npmDeps = importNpmLock {
    package = lib.importJSON ../package.json;
    packageLock = lib.importJSON ../package-lock.json;
  };
  npmConfigHook = importNpmLock.npmConfigHook;

  # lmdb and cbor-extract ship prebuilt binaries; node-gyp (python3) is the fallback.
  nativeBuildInputs = [ makeWrapper python3 ];

  # `npm run build` = tsc -p tsconfig.json into dist/
  npmBuildScript = "build";

  # dist/ is git-ignored, so `npm pack` (buildNpmPackage's default install) would leave
  # it out: install the tree by hand.
  installPhase = ''
    runHook preInstall
    npm prune --omit=dev --no-audit --no-fund
    mkdir -p $out/lib/blixard $out/bin
    cp -r package.json node_modules dist $out/lib/blixard/
    if [ -d bin ]; then cp -r bin $out/lib/blixard/; fi
    for b in blixard-node blixard; do
      makeWrapper ${nodejs_20}/bin/node $out/bin/$b \
        --add-flags $out/lib/blixard/bin/$b.js
    done
    runHook postInstall
  '';

  meta = {
    description = "A NixOS-native cluster of identical nodes that runs microVMs";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "blixard";
  };
}
