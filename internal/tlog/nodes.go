package tlog

import (
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
)

// Proofs are built from the tiles as tessera's client.ProofBuilder does, with one difference: the hash of every
// perfect subtree computed is remembered. Such a hash never changes once its subtree is complete (the tree is
// append-only), so one cache serves every tree size, and the entries of one batch, which share most of their
// proofs, pay for the expensive upper nodes once.

// nodeHash returns the hash of the perfect subtree id, complete in a tree of size entries.
func (l *Log) nodeHash(ctx context.Context, id compact.NodeID, size uint64) ([]byte, error) {
	if h, ok := l.nodes.Get(id); ok {
		return h, nil
	}
	tileLevel, tileIndex, nodeLevel, nodeIndex := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
	tile, err := l.readTile(ctx, tileLevel, tileIndex, layout.PartialTileSize(tileLevel, tileIndex, size))
	if err != nil {
		return nil, err
	}
	width := uint64(1) << nodeLevel
	first, last := nodeIndex*width, (nodeIndex+1)*width
	if last > uint64(len(tile.Nodes)) {
		return nil, fmt.Errorf("tile %d/%d has %d hashes, node %d/%d needs %d", tileLevel, tileIndex, len(tile.Nodes), id.Level, id.Index, last)
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, h := range tile.Nodes[first:last] {
		if err := r.Append(h, nil); err != nil {
			return nil, err
		}
	}
	h, err := r.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	l.nodes.Add(id, h)
	return h, nil
}

// proofHashes fetches the nodes of a proof for a tree of size entries and folds the ephemeral ones.
func (l *Log) proofHashes(ctx context.Context, nodes proof.Nodes, size uint64) ([][]byte, error) {
	hashes := make([][]byte, 0, len(nodes.IDs))
	for _, id := range nodes.IDs {
		h, err := l.nodeHash(ctx, id, size)
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

func (l *Log) inclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return l.proofHashes(ctx, nodes, size)
}

func (l *Log) consistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(from, to)
	if err != nil {
		return nil, err
	}
	return l.proofHashes(ctx, nodes, to)
}

// rootAt recomputes the root hash of the first size leaves from the tiles.
func (l *Log) rootAt(ctx context.Context, size uint64) ([]byte, error) {
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, 0, len(ids))
	for _, id := range ids {
		h, err := l.nodeHash(ctx, id, size)
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r, err := rf.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}
