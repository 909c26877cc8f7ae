#!/bin/sh
# kube-tools.sh builds a real kube-apiserver and etcd from the Go module proxy for the admission end-to-end tests
# (internal/kubetest), because the network here reaches only proxy.golang.org: there are no release downloads.
#
#   scripts/kube-tools.sh kube-apiserver VERSION OUT   e.g. v1.37.2 .tools/kube-apiserver-v1.37.2
#   scripts/kube-tools.sh etcd VERSION OUT             e.g. v3.6.16 .tools/etcd-v3.6.16
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod requires its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at v0.0.0 and replaces them with directories of its own repository, which a module
# download does not carry. A scratch module requiring it therefore replaces each staging module with its published
# v0.X.Y twin (kubernetes v1.X.Y is built from the same commit). The binary is written to OUT.tmp and renamed, so
# an interrupted build never leaves a file the Makefile would take as installed.
set -eu

what=${1:?usage: kube-tools.sh kube-apiserver|etcd VERSION OUT}
version=${2:?usage: kube-tools.sh kube-apiserver|etcd VERSION OUT}
out=${3:?usage: kube-tools.sh kube-apiserver|etcd VERSION OUT}
GO=${GO:-go}

case $out in /*) ;; *) out=$(pwd)/$out ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/ssf-kube-tools.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cd "$work"

# GOFLAGS may carry -mod=vendor or the like from the caller's project; the scratch module has none of it.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOWORK=off

case $what in
kube-apiserver)
	# v1.37.2 -> v0.37.2: the staging modules' tag for the same release.
	staging=v0.${version#v1.}
	{
		echo "module ssf.local/kube-tools"
		echo
		echo "go 1.26.0"
		echo
		echo "require k8s.io/kubernetes $version"
		echo
		echo "replace ("
		# The staging modules of k8s.io/kubernetes's go.mod that its build graph needs (sample-cli-plugin and
		# sample-controller are not published to the proxy and not imported).
		for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
			cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
			cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms \
			kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils \
			pod-security-admission sample-apiserver streaming; do
			echo "	k8s.io/$m => k8s.io/$m $staging"
		done
		echo ")"
	} >go.mod
	cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
	pkg=k8s.io/kubernetes/cmd/kube-apiserver
	# What kube-apiserver --version and /version report; the release build stamps the same from its git tag.
	minor=${version#v1.}
	minor=${minor%%.*}
	ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
	ldflags="$ldflags -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	;;
etcd)
	{
		echo "module ssf.local/etcd-tools"
		echo
		echo "go 1.26.0"
		echo
		echo "require go.etcd.io/etcd/server/v3 $version"
	} >go.mod
	# etcd's own main package (go.etcd.io/etcd/v3) is the repository's root module and pulls in etcdctl/etcdutl;
	# etcdmain.Main is the server's entry point and all the tests need.
	cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
	pkg=.
	ldflags=
	;;
*)
	echo "kube-tools.sh: unknown tool \"$what\": want kube-apiserver or etcd" >&2
	exit 2
	;;
esac

# tidy writes the scratch module's go.sum; the checksum database (sum.golang.org, through the proxy) still checks
# every module downloaded.
"$GO" mod tidy
start=$(date +%s)
"$GO" build -mod=mod -trimpath -ldflags="-s $ldflags" -o "$out.tmp" "$pkg"
mv "$out.tmp" "$out"
echo "kube-tools.sh: built $what $version into $out in $(($(date +%s) - start)) s"
